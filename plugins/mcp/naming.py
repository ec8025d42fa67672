"""Names the model sees for MCP tools: unique across servers, stable, ASCII-safe, at most 64 characters.

Scope: `assign_names(servers)` maps every (server id, tool name) pair to the name offered to the
model. The rules, applied to all servers at once so the result never depends on which server
answered first:
1. A server with `tool_prefix` offers `f"{tool_prefix}_{tool}"` (mistralrs's rule), others the
   bare tool name.
2. Every character outside `[A-Za-z0-9_.-]` becomes `_`, a name that starts with a digit, `.` or
   `-` gets a leading `_`.
3. When two or more tools end up with the same name, or one takes a `reserved` name (the Runner's
   own tools, e.g. `tool_callbacks`), every one of them is renamed `f"{server_id}_{name}"`
   (prefix on collision only, for all members, so none "wins").
4. A name over 64 characters keeps its first 57 and gets `_` plus 6 hex digits of a hash of
   (server id, tool name); the same hash suffix separates names still equal after step 3.
The original tool name is kept by the caller for `tools/call`.

Non-goals: tools of other plugins the MCP plugin cannot see at naming time (the plugin host
hides a source's tool that a static tool already names, and logs it), talking to servers.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = ["MAX_NAME_LEN", "assign_names", "safe_name"]

MAX_NAME_LEN = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_HASH_LEN = 6


def safe_name(name: str) -> str:
    """`name` with unsafe characters replaced by `_` and a valid first character (not yet length-capped)."""
    name = _UNSAFE.sub("_", name) or "_"
    return name if re.match(r"[A-Za-z_]", name) else "_" + name


def _digest(server_id: str, tool: str) -> str:
    return hashlib.sha1(f"{server_id}\0{tool}".encode()).hexdigest()[:_HASH_LEN]


def _with_hash(name: str, server_id: str, tool: str) -> str:
    return f"{name[:MAX_NAME_LEN - _HASH_LEN - 1]}_{_digest(server_id, tool)}"


def _capped(name: str, server_id: str, tool: str) -> str:
    return name if len(name) <= MAX_NAME_LEN else _with_hash(name, server_id, tool)


def assign_names(servers: Sequence[tuple[str, str | None, Iterable[str]]],
                 reserved: Iterable[str] = ()) -> dict[tuple[str, str], str]:
    """`{(server_id, tool): offered_name}` for `servers` = [(server_id, tool_prefix or None, tool names)];
    `reserved` names (other tools of the Runner) count as already taken.

    Deterministic: the same servers and tools always give the same names, in any order.
    """
    base: dict[tuple[str, str], str] = {}
    for server_id, prefix, tools in servers:
        for tool in tools:
            raw = f"{prefix}_{tool}" if prefix else tool
            base[(server_id, tool)] = _capped(safe_name(raw), server_id, tool)

    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, name in base.items():
        groups[name].append(key)
    taken = set(reserved)
    named: dict[tuple[str, str], str] = {}
    for name, keys in groups.items():
        if len(keys) == 1 and name not in taken:
            named[keys[0]] = name
            continue
        for server_id, tool in keys:
            named[(server_id, tool)] = _capped(safe_name(f"{server_id}_{name}"), server_id, tool)

    # still equal (server ids equal after sanitising, or cut at 64): separate with the hash suffix
    final: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, name in named.items():
        final[name].append(key)
    for name, keys in final.items():
        if len(keys) > 1 or name in taken:
            for server_id, tool in keys:
                named[(server_id, tool)] = _with_hash(name, server_id, tool)
    return named
