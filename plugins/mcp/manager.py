"""All MCP servers of one Runner: parallel start, per-server status, tools, calls, retries, shutdown.

Scope: `McpManager(config)` owns a `LoopThread` and one `ServerConnection` per enabled server.
- `start()` connects every server at once, each bounded by its connect timeout; a server that
  fails is skipped (its status says why) and retried in the background (interval doubling up to
  5 min) unless it is `required`, in which case every server is closed and `McpServerError`
  raised.
- `tools_of(server_id)`: the server's tools as agentkit `Tool`s (source `Mcp`), named by
  `agentkit.plugins.mcp.naming` across all connected servers and the Runner's `tool_callbacks`
  (`reserved`), and rebuilt when a server
  (re)connects or sends `list_changed`; allow/deny filters applied; annotations give the
  permission defaults. Each tool's `fn` runs the call on the loop under the global
  `max_concurrent_calls` semaphore and returns a `ToolResult` (errors included, never raised).
- `status()` / `reconnect()` for the Runner, `notes()` for the model (servers that are down),
  `shutdown()` closes every session (children terminated and reaped) and stops the loop.

Non-goals: the transport and call mechanics (`.connection`), hook wiring (`.plugin`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from agentkit.api.enums import AgentToolKind, AgentToolSource
from agentkit.api.mcp_options import McpClientConfigPy, McpServerConfigPy
from agentkit.errors import McpServerError
from agentkit.plugins.mcp.connection import CallSettings, McpCallError, ServerConnection, describe_error
from agentkit.plugins.mcp.loop_thread import LoopThread
from agentkit.plugins.mcp.naming import assign_names
from agentkit.plugins.mcp.results import is_destructive, to_tool_result, tool_permission, tool_schema
from agentkit.tools import Tool, ToolResult

__all__ = ["McpManager", "McpServerStatus"]

log = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 30.0
DEFAULT_HARD_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONCURRENT = 10
DEFAULT_RETRY_S = 5.0
MAX_RETRY_S = 300.0


@dataclass(frozen=True)
class McpServerStatus:
    """One MCP server as the Runner sees it (`Runner.mcp_status()`).

    `state`: "connected", "disconnected" (its connection ended, e.g. the child was killed: it is
    respawned on the next call), "connecting", "failed" (skipped; `error` says why,
    `next_retry_s` when the background retry runs), "disabled" (`enabled=False`) or "closed"
    (after shutdown).
    `tools`: the names offered to the model. `restarts`: sessions opened after the first
    (respawns after a crash, and reconnects).
    """

    id: str
    name: str
    transport: str
    state: str
    required: bool
    tools: tuple[str, ...]
    error: str | None = None
    server_info: str | None = None
    connect_time_s: float | None = None
    restarts: int = 0
    failures: int = 0
    next_retry_s: float | None = None


class McpManager:
    """The MCP client of one Runner (thread-safe; its async work runs on a private loop thread)."""

    def __init__(self, config: McpClientConfigPy, reserved: frozenset[str] = frozenset()) -> None:
        if not isinstance(config, McpClientConfigPy):
            raise TypeError(f"mcp_client_config must be a McpClientConfigPy, got {type(config).__name__}")
        self.config = config
        self._reserved = reserved  # the Runner's other tool names: an MCP tool taking one is prefixed
        idle = float(config.tool_timeout_secs or DEFAULT_TOOL_TIMEOUT_S)
        self._hard = float(config.tool_hard_timeout_secs or max(DEFAULT_HARD_TIMEOUT_S, idle))
        self._idle = min(idle, self._hard)
        self._retry_s = float(config.retry_interval_secs or DEFAULT_RETRY_S)
        self._max_calls = config.max_concurrent_calls or DEFAULT_MAX_CONCURRENT
        self._servers: dict[str, McpServerConfigPy] = {s.id: s for s in config.servers}
        self._conns: dict[str, ServerConnection] = {}
        self._failures: dict[str, int] = {}
        self._next_retry: dict[str, float] = {}
        self._retrying: set[str] = set()
        self._tools: dict[str, list[Tool]] = {}
        self._lock = threading.Lock()
        self._sem: asyncio.Semaphore | None = None
        self._closed = False
        self._loop: LoopThread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect every enabled server in parallel; McpServerError when a `required` one fails."""
        enabled = [s for s in self.config.servers if s.enabled]
        if not enabled:
            return
        self._loop = LoopThread()
        for server in enabled:
            settings = CallSettings(self._idle, self._hard, float(server.connect_timeout_secs
                                                                  or DEFAULT_CONNECT_TIMEOUT_S))
            self._conns[server.id] = ServerConnection(server, settings, on_change=self._changed)
        longest = max(c.settings.connect_timeout_s for c in self._conns.values())
        self._loop.run(self._connect_all(), timeout=longest + 30)
        missing = [c for c in self._conns.values() if c.config.required and not c.alive]
        if missing:
            names = "; ".join(f"{c.config.id!r}: {c.error}" for c in missing)
            self.shutdown()
            raise McpServerError(f"required MCP server(s) failed to start: {names}. Fix the server or set "
                                 "required=False to start without it")
        self._rebuild()

    async def _connect_all(self) -> None:
        self._sem = asyncio.Semaphore(self._max_calls)
        await asyncio.gather(*(c.connect() for c in self._conns.values()))
        for conn in self._conns.values():
            self._after_connect(conn)

    def _after_connect(self, conn: ServerConnection) -> None:
        """Bookkeeping after a connect attempt (on the loop): failure count, background retry."""
        sid = conn.config.id
        if conn.alive:
            self._failures[sid] = 0
            self._next_retry.pop(sid, None)
            return
        self._failures[sid] = self._failures.get(sid, 0) + 1
        if sid not in self._retrying and not self._closed:
            self._retrying.add(sid)
            asyncio.get_running_loop().create_task(self._retry(conn), name=f"mcp-retry-{sid}")

    async def _retry(self, conn: ServerConnection) -> None:
        sid = conn.config.id
        delay = self._retry_s
        try:
            while not self._closed and not conn.alive and conn.state != "closed":
                self._next_retry[sid] = time.monotonic() + delay
                await asyncio.sleep(delay)
                if self._closed:
                    return
                await conn.connect()
                if conn.alive:
                    log.info("MCP server %r is back after a background retry", sid)
                    self._failures[sid] = 0
                    self._rebuild()
                    return
                self._failures[sid] = self._failures.get(sid, 0) + 1
                delay = min(delay * 2, MAX_RETRY_S)
        finally:
            self._retrying.discard(sid)
            self._next_retry.pop(sid, None)

    def reconnect(self, server_id: str | None = None, failed_only: bool = True) -> list[McpServerStatus]:
        """Reconnect one server (`server_id`) or every server (only the failed ones when `failed_only`) now."""
        if server_id is not None and server_id not in self._servers:
            raise ValueError(f"no MCP server with id {server_id!r}; configured: {sorted(self._servers)}")
        if self._loop is None or self._closed:
            return self.status()
        targets = [c for sid, c in self._conns.items() if server_id in (None, sid)
                   and (server_id is not None or not failed_only or not c.alive)]

        async def run() -> None:
            for conn in targets:
                if server_id is not None or not failed_only:
                    await conn.close_session()
            await asyncio.gather(*(c.connect() for c in targets))
            for conn in targets:
                self._after_connect(conn)

        longest = max((c.settings.connect_timeout_s for c in targets), default=0.0)
        self._loop.run(run(), timeout=longest + 30)
        self._rebuild()
        return self.status()

    def shutdown(self) -> None:
        """Close every session (children terminated and reaped) and stop the loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop = self._loop
        if loop is None or not loop.alive:
            return

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in self._conns.values()), return_exceptions=True)

        try:
            loop.run(close_all(), timeout=30)
        except Exception as exc:
            log.warning("MCP shutdown: %s", describe_error(exc))
        loop.stop()

    # ---- tools ---------------------------------------------------------------------------------
    def _offered(self, server: McpServerConfigPy, conn: ServerConnection) -> list[Any]:
        tools = conn.tools if conn.offers_tools else []  # kept while a crashed server respawns
        allow, deny = server.allow_tools, server.deny_tools or []
        return [t for t in tools if (allow is None or any(fnmatch.fnmatchcase(t.name, p) for p in allow))
                and not any(fnmatch.fnmatchcase(t.name, p) for p in deny)]

    def _rebuild(self) -> None:
        """Recompute every server's agentkit tools (names depend on all servers' tools)."""
        with self._lock:
            offered = {sid: self._offered(self._servers[sid], c) for sid, c in self._conns.items()}
            names = assign_names([(sid, self._servers[sid].tool_prefix, [t.name for t in tools])
                                  for sid, tools in offered.items()], self._reserved)
            self._tools = {sid: [self._tool(sid, t, names[(sid, t.name)]) for t in tools]
                           for sid, tools in offered.items()}

    def _changed(self, conn: ServerConnection) -> None:
        """A connection's tools or state changed on its own (list_changed, background respawn)."""
        if not conn.alive:
            self._after_connect(conn)
        self._rebuild()

    def _tool(self, sid: str, mcp_tool: Any, offered: str) -> Tool:
        annotations = getattr(mcp_tool, "annotations", None)
        description = mcp_tool.description or getattr(annotations, "title", None) or ""
        fn = partial(self._call_sync, sid, mcp_tool.name, offered, not is_destructive(annotations))
        return Tool(name=offered, description=description, parameters=tool_schema(mcp_tool), fn=fn,
                    source=AgentToolSource.Mcp, kind=AgentToolKind.Custom, label=offered,
                    permission=tool_permission(annotations))

    def tools_of(self, server_id: str) -> list[Tool]:
        """Tools server `server_id` offers now ([] while it is down or `auto_register_tools=False`)."""
        if not self.config.auto_register_tools:
            return []
        with self._lock:
            return list(self._tools.get(server_id, []))

    def server_ids(self) -> list[str]:
        """Ids of the enabled servers, in configuration order."""
        return [s.id for s in self.config.servers if s.enabled]

    # ---- calls ---------------------------------------------------------------------------------
    def _call_sync(self, sid: str, original: str, offered: str, may_repeat: bool, _called: str,
                   arguments: dict[str, Any]) -> ToolResult:
        conn = self._conns[sid]
        loop = self._loop
        if loop is None or self._closed or not loop.alive:
            return _error(offered, "the MCP client is shut down", "failed")
        budget = self._hard + conn.settings.connect_timeout_s * 2 + 10
        try:
            result = loop.run(self._call(conn, original, arguments, may_repeat), timeout=budget)
        except McpCallError as exc:
            return _error(offered, exc.message, exc.status)
        except TimeoutError:
            return _error(offered, f"MCP server {sid!r} gave no result within {budget:g} s", "timeout")
        except Exception as exc:
            log.warning("MCP call %s/%s failed: %s", sid, original, describe_error(exc))
            return _error(offered, f"the call to MCP server {sid!r} failed: {describe_error(exc)}", "failed")
        return to_tool_result(result, offered)

    async def _call(self, conn: ServerConnection, name: str, arguments: dict[str, Any], may_repeat: bool) -> Any:
        assert self._sem is not None
        async with self._sem:
            was_alive, restarts = conn.alive, conn.restarts
            try:
                return await conn.call(name, arguments, may_repeat=may_repeat)
            finally:
                if not conn.alive:
                    self._after_connect(conn)
                if conn.restarts != restarts or (conn.alive and not was_alive):
                    self._rebuild()

    # ---- status --------------------------------------------------------------------------------
    def status(self) -> list[McpServerStatus]:
        """Every configured server's status, in configuration order."""
        out = []
        now = time.monotonic()
        for server in self.config.servers:
            conn = self._conns.get(server.id)
            transport = server.source.kind
            if conn is None:
                state = "closed" if self._closed and server.enabled else "disabled"
                out.append(McpServerStatus(server.id, server.name, transport, state, server.required, ()))
                continue
            state = conn.state if conn.state != "connected" or conn.alive else "disconnected"
            error = conn.error if state == "failed" else None
            retry = self._next_retry.get(server.id)
            out.append(McpServerStatus(
                server.id, server.name, transport, state, server.required,
                tuple(t.name for t in self.tools_of(server.id)) if state in ("connected", "disconnected") else (),
                error=error, server_info=conn.server_info, connect_time_s=conn.connect_time_s,
                restarts=conn.restarts, failures=self._failures.get(server.id, 0),
                next_retry_s=None if retry is None else max(0.0, retry - now)))
        return out

    def notes(self) -> list[str]:
        """System notes for the model: the servers that are down and that their tools are missing."""
        down = [s for s in self.status() if s.state in ("failed", "connecting") and s.error]
        if not down:
            return []
        listed = "; ".join(f"'{s.name}' ({s.error})" for s in down)
        return [f"Some MCP tool servers are unavailable, so their tools are missing: {listed}. If the "
                "task needs them, say so instead of guessing their results."]


def _error(tool: str, message: str, status: str) -> ToolResult:
    return ToolResult(json.dumps({"error": message, "tool": tool, "status": status}, ensure_ascii=False),
                      status=status)  # type: ignore[arg-type]
