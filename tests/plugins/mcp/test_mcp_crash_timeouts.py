"""Crash recovery (kill -9 between calls, crash during a call) and call timeouts (idle, progress, hard cap)."""

from __future__ import annotations

import json
import time

from agentkit.tools import ToolCall


def _call(host, name, **args):
    return host.execute_tool(ToolCall(name, json.dumps(args)))


def test_killed_child_is_respawned_by_the_next_call_at_the_latest(mcp, mcp_host):
    host = mcp_host([mcp.toy("victim")])
    assert _call(host, "echo", text="one").content == "victim: one"
    old = mcp.kill9("--name victim")
    result = _call(host, "echo", text="two")  # at once: waits for the respawn already under way
    assert (result.status, result.content) == ("ok", "victim: two")
    [status] = mcp.plugin(host).mcp_status()
    assert status.state == "connected" and status.restarts == 1
    assert old not in mcp.descendants()


def test_killed_child_is_respawned_in_the_background_before_any_call(mcp, mcp_host):
    host = mcp_host([mcp.toy("victim")])
    old = mcp.kill9("--name victim")
    deadline = time.monotonic() + 30
    while not any("--name victim" in cmd for pid, cmd in mcp.descendants().items() if pid != old):
        assert time.monotonic() < deadline, "no new child after the kill"
        time.sleep(0.05)
    while mcp.plugin(host).mcp_status()[0].state != "connected":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert mcp.plugin(host).mcp_status()[0].restarts == 1
    assert _call(host, "echo", text="up").content == "victim: up"


def test_crash_during_call_is_an_error_for_the_model_not_a_transport_string(mcp, mcp_host, tmp_path):
    events = tmp_path / "events"
    host = mcp_host([mcp.toy("crashy", env={"TOY_EVENTS": str(events)})])
    result = _call(host, "crash")
    body = json.loads(result.content)
    assert result.status == "failed" and "stopped during the call to 'crash' twice" in body["error"]
    assert "Connection closed" not in body["error"] and "MCPError" not in body["error"]
    # destructive: one attempt only, and the model is told it may have taken effect
    result = _call(host, "crash_destructive")
    assert "not repeated because the tool is marked destructive" in json.loads(result.content)["error"]
    assert events.read_text().count("start crash_destructive") == 1
    assert _call(host, "echo", text="alive").content == "crashy: alive"  # respawned again


def test_idle_timeout_cancels_the_call_on_the_server(mcp, mcp_host, tmp_path):
    events = tmp_path / "events"
    host = mcp_host([mcp.toy("slow", env={"TOY_EVENTS": str(events)})], tool_timeout_secs=1)
    started = time.monotonic()
    result = _call(host, "sleep", seconds=30, tag="idle")
    assert time.monotonic() - started < 15  # 1 s idle timeout, loose bound for a shared machine
    assert result.status == "timeout" and "sent nothing for 1 s" in json.loads(result.content)["error"]
    deadline = time.monotonic() + 10
    while "cancelled sleep idle" not in (events.read_text() if events.exists() else ""):
        assert time.monotonic() < deadline, "the server never saw notifications/cancelled"
        time.sleep(0.05)
    assert _call(host, "echo", text="next").status == "ok"


def test_progress_extends_the_idle_timeout_up_to_the_hard_cap(mcp, mcp_host):
    host = mcp_host([mcp.toy("busy")], tool_timeout_secs=2, tool_hard_timeout_secs=7)
    ok = _call(host, "sleep", seconds=5, progress_every=0.25)
    assert (ok.status, ok.content) == ("ok", "slept 5.0")  # 5 s > the 2 s idle timeout
    capped = _call(host, "sleep", seconds=30, progress_every=0.25)
    assert capped.status == "timeout" and "hard cap of 7 s" in json.loads(capped.content)["error"]


def test_max_concurrent_calls_serialises_calls(mcp, mcp_host, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    events = tmp_path / "events"
    host = mcp_host([mcp.toy("one", env={"TOY_EVENTS": str(events)})], max_concurrent_calls=1)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda i: _call(host, "sleep", seconds=0.3, tag=str(i)), range(3)))
    assert all(r.status == "ok" for r in results)
    lines = [line.split()[0] for line in events.read_text().splitlines()]
    assert lines == ["start", "end"] * 3, lines  # never two calls in flight
