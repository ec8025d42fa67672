"""Partial failure: a broken server is skipped, reported (status and a note), retried; `required` fails start."""

from __future__ import annotations

import json
import time

import pytest

from agentkit.agent.context import ToolContext
from agentkit.api.requests import ChatCompletionRequest
from agentkit.errors import McpServerError
from agentkit.file_store import FileStore
from agentkit.sessions import Session
from agentkit.tools import ToolCall


def test_broken_and_hanging_servers_are_skipped_and_named(mcp, mcp_host):
    hang = mcp.Server("hang", "hanging server", mcp.Source.Process("sleep", ["60"], None, None),
                      connect_timeout_secs=1.5)
    bad = mcp.Server("bad", "broken server", mcp.Source.Process("/nonexistent/mcp-server", None, None, None))
    started = time.monotonic()
    host = mcp_host([mcp.toy("good"), bad, hang])
    took = time.monotonic() - started
    # the hanging server costs its connect timeout, not more (loose bound: the machine is shared)
    assert took < 1.5 + 15, took
    status = {s.id: s for s in mcp.plugin(host).mcp_status()}
    assert status["good"].state == "connected" and "echo" in status["good"].tools
    assert status["bad"].state == "failed" and "No such file" in status["bad"].error
    assert status["hang"].state == "failed" and "1.5 s connect timeout" in status["hang"].error
    assert status["bad"].next_retry_s is not None and status["bad"].tools == ()
    assert "sleep 60" not in " ".join(mcp.descendants().values())  # the hanging child was reaped
    assert host.execute_tool(ToolCall("echo", json.dumps({"text": "hi"}))).content == "good: hi"
    context = ToolContext(request=ChatCompletionRequest(model="x", messages="hi"), session=Session.new(),
                          config=None, files=FileStore(), turn=1, max_seq_len=512, count_tokens=len, output_tokens=128)
    assert host.request_tools(context) == {}  # MCP tools come from tool sources; the hook only adds the note
    [note] = context.notes
    assert "'broken server'" in note and "'hanging server'" in note and "good" not in note
    assert note in context.system_note()


def test_background_retry_and_reconnect_bring_a_server_back(mcp, mcp_host, tmp_path):
    flag = tmp_path / "ready"
    late = mcp.toy("late", "--fail-unless-exists", str(flag))
    host = mcp_host([late], retry_interval_secs=0.5)
    plugin = mcp.plugin(host)
    [status] = plugin.mcp_status()
    assert status.state == "failed" and "failing on start as asked" in status.error
    assert host.all_tools() == {}
    flag.write_text("")
    deadline = time.monotonic() + 30
    while plugin.mcp_status()[0].state != "connected" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert plugin.mcp_status()[0].state == "connected", plugin.mcp_status()
    assert "echo" in host.all_tools() and plugin.manager.notes() == []
    [again] = plugin.mcp_reconnect("late")  # an explicit reconnect restarts it
    assert again.state == "connected"
    with pytest.raises(ValueError, match="no MCP server with id 'nope'"):
        plugin.mcp_reconnect("nope")


def test_required_server_failure_fails_start_and_leaves_no_child(mcp):
    from agentkit.config import RunnerConfig
    from agentkit.plugin_host import PluginHost

    before = set(mcp.descendants())
    host = PluginHost.create()
    bad = mcp.Server("must", "must", mcp.Source.Process("/nonexistent/mcp-server", None, None, None),
                     required=True)
    with pytest.raises(McpServerError, match="required MCP server.*'must'"):
        host.configure(RunnerConfig(mcp_client_config=mcp.Client([mcp.toy("fine"), bad])))
    assert set(mcp.descendants()) - before == set()


def test_disabled_server_is_not_started(mcp, mcp_host):
    host = mcp_host([mcp.toy("on"), mcp.toy("off", enabled=False)])
    status = {s.id: s.state for s in mcp.plugin(host).mcp_status()}
    assert status == {"on": "connected", "off": "disabled"}
    assert not any("--name off" in c for c in mcp.descendants().values())


def test_websocket_source_is_skipped_with_a_clear_reason(mcp, mcp_host):
    ws = mcp.Server("ws", "ws", mcp.Source.WebSocket("ws://127.0.0.1:9/mcp", None, None))
    [status] = mcp.plugin(mcp_host([ws])).mcp_status()
    assert status.state == "failed" and "WebSocket transport is not supported" in status.error
    assert "McpServerSourcePy.Http" in status.error


def test_an_mcp_tool_named_like_a_tool_callback_is_prefixed_not_hidden(mcp):
    from agentkit.config import RunnerConfig
    from agentkit.plugin_host import PluginHost

    host = PluginHost.create()
    try:
        host.configure(RunnerConfig(tool_callbacks={"echo": lambda name, args: "local echo"},
                                    mcp_client_config=mcp.Client([mcp.toy("srv", allow_tools=["echo"])])))
        assert sorted(host.all_tools()) == ["echo", "srv_echo"]
        assert host.execute_tool(ToolCall("echo", '{"text": "x"}')).content == "local echo"
        assert host.execute_tool(ToolCall("srv_echo", '{"text": "x"}')).content == "srv: x"
    finally:
        host.shutdown(None)
