"""The respawn path after kill -9: the new child starts at once, the tools stay offered, nothing is left."""

from __future__ import annotations

import contextlib
import json
import time

import anyio

from agentkit.plugins.mcp.connection import ServerConnection
from agentkit.tools import ToolCall


def _call(host, name, **args):
    return host.execute_tool(ToolCall(name, json.dumps(args)))


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_new_child_starts_before_the_dead_session_is_torn_down(mcp, mcp_host, monkeypatch):
    events: list[tuple[str, int]] = []
    original = ServerConnection._watched

    @contextlib.asynccontextmanager
    async def slow_teardown(self, transport):
        gen = self._gen
        events.append(("open", gen))
        async with original(self, transport) as streams:
            yield streams
        await anyio.sleep(0.5)  # a transport that is slow to close
        events.append(("closed", gen))

    monkeypatch.setattr(ServerConnection, "_watched", slow_teardown)
    host = mcp_host([mcp.toy("victim")])
    mcp.kill9("--name victim")
    _wait(lambda: ("closed", 1) in events and mcp.plugin(host).mcp_status()[0].state == "connected",
          "no respawn after the kill")
    assert events.index(("open", 2)) < events.index(("closed", 1)), events
    assert _call(host, "echo", text="back").content == "victim: back"


def test_tools_stay_offered_while_a_crashed_server_respawns(mcp, mcp_host):
    host = mcp_host([mcp.toy("victim")])
    manager = mcp.plugin(host).manager
    mcp.kill9("--name victim")
    seen = []
    while manager.status()[0].restarts < 1:
        manager._rebuild()  # what a concurrent call's bookkeeping does mid-respawn
        seen.append((manager.status()[0].state, [t.name for t in manager.tools_of("victim")]))
        time.sleep(0.01)
    assert any(state == "connecting" for state, _ in seen), seen
    assert all("echo" in names for _, names in seen), seen


def test_shutdown_during_a_respawn_leaves_no_child(mcp, mcp_host):
    host = mcp_host([mcp.toy("victim")])
    old = mcp.kill9("--name victim")
    _wait(lambda: any("--name victim" in c for p, c in mcp.descendants().items() if p != old),
          "no new child after the kill")
    host.shutdown(None)  # the new child may still be starting: it is stopped and reaped too
    assert not mcp.descendants(), mcp.descendants()
