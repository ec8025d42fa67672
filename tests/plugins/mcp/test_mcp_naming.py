"""Tool names across MCP servers: unique, stable, ASCII-safe, capped, prefixed only on collision."""

from __future__ import annotations

import itertools
import re

from agentkit.plugins.mcp.naming import MAX_NAME_LEN, assign_names
from agentkit.tools import Tool

VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def test_bare_names_without_collision_and_prefix_only_on_collision():
    names = assign_names([("fs1", None, ["read_file", "list"]), ("fs2", None, ["read_file", "stat"])])
    assert names[("fs1", "list")] == "list" and names[("fs2", "stat")] == "stat"
    assert names[("fs1", "read_file")] == "fs1_read_file"
    assert names[("fs2", "read_file")] == "fs2_read_file"


def test_tool_prefix_is_mistralrs_rule():
    names = assign_names([("a", "web", ["search"]), ("b", None, ["search"])])
    assert names[("a", "search")] == "web_search" and names[("b", "search")] == "search"


def test_names_do_not_depend_on_server_order():
    servers = [("a", None, ["x", "y"]), ("b", None, ["x", "z"]), ("c", "p", ["y"])]
    results = {tuple(sorted(assign_names(list(order)).items())) for order in itertools.permutations(servers)}
    assert len(results) == 1


def test_unsafe_and_long_names_become_valid_unique_names():
    long_a, long_b = "t" * 80 + "a", "t" * 80 + "b"
    names = assign_names([("s p@ce", None, ["get weather!", "9lives", "ünïcode", long_a, long_b]),
                          ("other", None, ["get weather!"])])
    for name in names.values():
        assert VALID.match(name) and len(name) <= MAX_NAME_LEN, name
        Tool(name=name)  # the Tool type accepts it
    assert len(set(names.values())) == len(names)
    assert names[("s p@ce", "9lives")] == "_9lives"


def test_server_ids_equal_after_sanitising_still_unique():
    names = assign_names([("a b", None, ["x"]), ("a_b", None, ["x"])])
    assert len(set(names.values())) == 2 and all(VALID.match(n) for n in names.values())


def test_reserved_names_of_the_runner_push_mcp_tools_to_a_prefix():
    names = assign_names([("srv", None, ["echo", "other"])], reserved={"echo"})
    assert names == {("srv", "echo"): "srv_echo", ("srv", "other"): "other"}
