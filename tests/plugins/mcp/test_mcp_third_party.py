"""Real third-party MCP servers over stdio: server-everything, two server-filesystem instances
(name collisions), server-memory (npm) and mcp-server-time (PyPI), all installed by `.ci/run`."""

from __future__ import annotations

import json

from agentkit.api.enums import AgentPermission, AgentToolSource
from agentkit.tools import ToolCall


def _call(host, name, **args):
    return host.execute_tool(ToolCall(name, json.dumps(args)))


def test_server_everything_text_image_structured_and_progress(mcp, mcp_host):
    entry = mcp.npm_server("server-everything")
    host = mcp_host([mcp.Server("ev", "everything", mcp.Source.Process("node", [entry, "stdio"], None, None))],
                    tool_timeout_secs=5)
    tools = host.all_tools()
    assert {"echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"} <= set(tools)
    assert all(t.source is AgentToolSource.Mcp for t in tools.values())
    assert _call(host, "echo", message="hello").content == "Echo: hello"
    assert _call(host, "get-sum", a=2, b=3).content == "The sum of 2 and 3 is 5."
    image = _call(host, "get-tiny-image")
    assert len(image.images_base64) == 1 and "[image 1: image/png, attached]" in image.content
    structured = _call(host, "get-structured-content", location="New York")
    assert structured.status == "ok" and "temperature" in structured.content
    progress = _call(host, "trigger-long-running-operation", duration=2, steps=4)
    assert progress.status == "ok" and "completed" in progress.content.lower()
    assert mcp.plugin(host).manager._conns["ev"].progress_events >= 3  # a progressToken was sent


def test_two_filesystem_servers_unique_names_each_reaching_its_root(mcp, mcp_host, tmp_path):
    entry = mcp.npm_server("server-filesystem")
    roots = [tmp_path / "one", tmp_path / "two"]
    for i, root in enumerate(roots):
        root.mkdir()
        (root / "f.txt").write_text(f"root {i}")
    servers = [mcp.Server(f"fs{i}", f"fs{i}", mcp.Source.Process("node", [entry, str(root)], None, None))
               for i, root in enumerate(roots)]
    host = mcp_host(servers)
    names = sorted(host.all_tools())
    status = mcp.plugin(host).mcp_status()
    per_server = len(status[0].tools)
    assert per_server >= 10 and len(names) == 2 * per_server == len(set(names))
    assert all(n.startswith(("fs0_", "fs1_")) for n in names)
    assert _call(host, "fs0_read_text_file", path=str(roots[0] / "f.txt")).content.startswith("root 0")
    assert _call(host, "fs1_read_text_file", path=str(roots[1] / "f.txt")).content.startswith("root 1")
    denied = _call(host, "fs1_read_text_file", path=str(roots[0] / "f.txt"))
    assert denied.status == "failed" and "outside allowed directories" in denied.content
    tools = host.all_tools()
    assert tools["fs0_read_text_file"].permission is AgentPermission.Auto  # readOnlyHint
    assert tools["fs0_write_file"].permission is AgentPermission.Ask  # destructiveHint
    mcp.plugin(host).mcp_reconnect(failed_only=False)  # a restart gives the same names
    assert sorted(host.all_tools()) == names


def test_server_memory_and_mcp_server_time(mcp, mcp_host, tmp_path):
    memory = mcp.npm_server("server-memory")
    store = tmp_path / "memory.json"
    host = mcp_host([
        mcp.Server("mem", "memory", mcp.Source.Process("node", [memory], None, {"MEMORY_FILE_PATH": str(store)})),
        mcp.Server("time", "time", mcp.Source.Process(mcp.time_server(), ["--local-timezone", "UTC"], None, None)),
    ])
    made = _call(host, "create_entities", entities=[{"name": "Ada", "entityType": "person",
                                                     "observations": ["wrote programs"]}])
    assert made.status == "ok" and "Ada" in made.content
    graph = json.loads(_call(host, "read_graph").content)
    assert graph["entities"][0]["name"] == "Ada" and "Ada" in store.read_text()
    now = json.loads(_call(host, "get_current_time", timezone="Europe/Paris").content)
    assert now["timezone"] == "Europe/Paris" and now["datetime"].startswith("20")
