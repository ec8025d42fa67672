"""Streamable HTTP against a real server on 127.0.0.1 (bearer token, headers, server restart), the
`tools/list` cache refreshed on `list_changed`, allow/deny filters, and shutdown leaving no child."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from agentkit.tools import ToolCall


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_http(toy: str, port: int, token: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, toy, "--name", "web", "--http", str(port), "--require-token", token],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"HTTP server exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("HTTP server did not listen within 30 s")


@pytest.fixture
def http_server(mcp):
    procs = []

    def start(port: int, token: str = "s3cret") -> subprocess.Popen:
        procs.append(_start_http(mcp.TOY, port, token))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


def test_streamable_http_with_token_and_headers_and_reconnect(mcp, mcp_host, http_server):
    port = _free_port()
    server = http_server(port)
    url = f"http://127.0.0.1:{port}/mcp"
    good = mcp.Server("web", "web", mcp.Source.Http(url, 10, {"X-Toy": "yes"}), bearer_token="s3cret")
    no_token = mcp.Server("anon", "anon", mcp.Source.Http(url, 10, {"X-Toy": "yes"}), tool_prefix="anon")
    host = mcp_host([good, no_token], retry_interval_secs=60)
    status = {s.id: s for s in mcp.plugin(host).mcp_status()}
    assert status["web"].state == "connected" and status["anon"].state == "failed"
    assert host.execute_tool(ToolCall("echo", json.dumps({"text": "over http"}))).content == "web: over http"
    server.kill()
    server.wait(10)
    http_server(port)  # the server restarts on the same port: the next call reconnects
    result = host.execute_tool(ToolCall("echo", json.dumps({"text": "again"})))
    assert (result.status, result.content) == ("ok", "web: again"), result.content


def test_list_changed_refreshes_the_cache_and_filters_apply(mcp, mcp_host):
    host = mcp_host([mcp.toy("grower", allow_tools=["grow", "echo", "new_*"], deny_tools=["echo"])])
    assert sorted(host.all_tools()) == ["grow"]
    assert host.execute_tool(ToolCall("echo", '{"text": "x"}')) is None  # filtered: not offered, not run
    host.execute_tool(ToolCall("grow", json.dumps({"tool_name": "new_tool"})))
    deadline = time.monotonic() + 10
    while "new_tool" not in host.all_tools() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(host.all_tools()) == ["grow", "new_tool"]
    assert host.execute_tool(ToolCall("new_tool", "{}")).content == "new_tool ran"


def test_shutdown_leaves_no_child_process(mcp, mcp_host):
    before = set(mcp.descendants())
    host = mcp_host([mcp.toy("a"), mcp.toy("b"), mcp.toy("c")])
    host.execute_tool(ToolCall("a_echo", '{"text": "x"}'))
    assert len(set(mcp.descendants()) - before) >= 3
    host.shutdown(None)
    assert set(mcp.descendants()) - before == set()
    assert [s.state for s in mcp.plugin(host).mcp_status()] == ["closed"] * 3
    assert json.loads(host.execute_tool(ToolCall("a_echo", '{"text": "x"}')).content)["status"] == "failed"
