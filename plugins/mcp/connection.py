"""One MCP server's connection: spawn or dial it, keep its session open, call its tools, respawn it.

Scope: `ServerConnection` (runs on the plugin's event loop) owns one server:
- `connect(timeout)`: build the transport (stdio child with its stderr kept for error messages,
  or streamable HTTP with headers and bearer token), open the session (`mode="legacy"`: the
  initialize handshake every server speaks), list its tools (all pages). The session lives in
  a task of its own, inside an anyio cancel scope, so a connect timeout or `close()` cancels it
  cleanly and the SDK reaps the child.
- `call(name, arguments)`: one `tools/call` with a progress callback (so a `progressToken` is
  sent). The idle deadline starts at `idle_timeout` and each progress notification moves it
  forward, never past the hard cap; on expiry the request's scope is cancelled, which makes
  the SDK send `notifications/cancelled`, and `McpCallError` says what happened.
- Crash handling: the transport's read stream is watched, so a server that dies is respawned
  at once in the background (at most 3 times a minute; past that, by the next call; the dead
  session is torn down concurrently, so the new child starts without waiting for it), and a
  call never goes to a dead session; a connection lost during a call is respawned and the call
  retried once (not for tools annotated destructive, whose call may have had effects: those
  get an error saying so). Transport errors never reach the model raw.
- `notifications/tools/list_changed` triggers a refetch of the tool list. `on_change(conn)` is
  called after every change the manager must see (tools listed again, respawned, respawn failed).

Non-goals: tool naming across servers, turning results into `ToolResult` (`agentkit.plugins.mcp.
naming`, `.results`), the concurrency cap and background retries (`.manager`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from agentkit.api.agent_options import McpServerConfigPy

__all__ = ["CallSettings", "McpCallError", "ServerConnection", "describe_error"]

log = logging.getLogger(__name__)

_LIST_PAGE_CAP = 100
_STOP_WAIT_S = 10.0


class McpCallError(Exception):
    """A tool call that produced no result; the message is written for the model (no raw transport text)."""

    def __init__(self, message: str, status: str = "failed") -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class CallSettings:
    """Per-call limits: idle seconds (progress refreshes them) under a hard cap, and the connect timeout."""

    idle_timeout_s: float = 30.0
    hard_timeout_s: float = 300.0
    connect_timeout_s: float = 10.0


def describe_error(exc: BaseException) -> str:
    """One readable line for an exception, unwrapping exception groups to their first leaf."""
    while isinstance(leaves := getattr(exc, "exceptions", None), tuple) and leaves:  # an ExceptionGroup
        exc = leaves[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _WatchedStream(anyio.abc.ObjectReceiveStream[Any]):
    """The transport's read stream, calling `on_end()` once when the server side ends (EOF or close)."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner, self._on_end = inner, on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        self._on_end()
        await self._inner.aclose()


class ServerConnection:
    """One configured MCP server and its live session (all methods run on the plugin's loop)."""

    def __init__(self, config: McpServerConfigPy, settings: CallSettings,
                 on_change: Callable[[ServerConnection], None] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.on_change = on_change
        self.state = "idle"  # idle, connecting, connected, failed, closed
        self.error: str | None = None
        self.tools: list[Any] = []  # mcp Tool models, as listed
        self.server_info: str | None = None
        self.connect_time_s: float | None = None
        self.restarts = 0  # sessions opened after the first (respawns and reconnects)
        self._opened = 0
        self._gen = 0  # session generation: a late end of an old session must not mark the new one lost
        self._eager: list[float] = []  # times of background respawns, for the 3-a-minute cap
        self.progress_events = 0
        self._client: Any = None
        self._lost = True
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._stderr: Any = None
        self._reapers: set[asyncio.Task[None]] = set()  # dead sessions being torn down
        self._respawning = False  # connecting again after the session was lost (its tools stay offered)

    # ---- transport -----------------------------------------------------------------------------
    def _transport(self) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        source: Any = self.config.source  # a McpServerSourcePy variant
        kind = source.kind
        if kind == "Process":
            if self._stderr is not None:
                self._stderr.close()
            self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            params = StdioServerParameters(command=source.command, args=list(source.args or []),
                                           env={**os.environ, **(source.env or {})}, cwd=source.work_dir)
            return self._watched(stdio_client(params, errlog=self._stderr))
        if kind == "Http":
            return self._watched(self._http(source.url, source.timeout_secs, dict(source.headers or {})))
        raise ValueError(f"MCP server {self.config.id!r}: the {kind} transport is not supported by the mcp "
                         "SDK 2.x; serve it over streamable HTTP and use McpServerSourcePy.Http")

    @contextlib.asynccontextmanager
    async def _http(self, url: str, timeout_secs: int | None, headers: dict[str, str]) -> AsyncIterator[Any]:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self.config.bearer_token:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        per_request = float(timeout_secs or 30)
        timeout = httpx2.Timeout(per_request, read=max(per_request, self.settings.hard_timeout_s))
        async with create_mcp_http_client(headers=headers, timeout=timeout) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                yield streams

    @contextlib.asynccontextmanager
    async def _watched(self, transport: Any) -> AsyncIterator[Any]:
        gen = self._gen
        async with transport as (read, write):
            yield _WatchedStream(read, lambda: self._mark_lost(gen)), write

    def _mark_lost(self, gen: int | None = None) -> None:
        """The session of generation `gen` (default: the current one) ended; respawn it unless we closed it."""
        if self._lost or (gen is not None and gen != self._gen):
            return
        self._lost = True
        log.info("MCP server %r: connection ended", self.config.id)
        now = time.monotonic()
        self._eager = [t for t in self._eager if now - t < 60.0]
        unexpected = self.state == "connected" and self._stop is not None and not self._stop.is_set()
        if unexpected and len(self._eager) < 3:
            self._eager.append(now)
            asyncio.get_running_loop().create_task(self._respawn_now(), name=f"mcp-respawn-{self.config.id}")

    async def _respawn_now(self) -> None:
        await self.connect()
        if self.on_change is not None:
            self.on_change(self)

    def stderr_tail(self, chars: int = 400) -> str:
        """The last `chars` characters the stdio child wrote to stderr ("" for HTTP)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        try:
            self._stderr.flush()
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - chars * 4))
            return self._stderr.read()[-chars:].strip()
        except (OSError, ValueError):
            return ""

    # ---- session lifecycle ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """True while the session is open and its transport has not ended."""
        return self.state == "connected" and not self._lost

    async def connect(self, timeout: float | None = None) -> None:
        """(Re)open the session and list the tools; on failure `state` is "failed" and `error` says why.

        Raises nothing for a server that fails (the manager reads `state`), only CancelledError.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.alive or self.state == "closed":
                return
            self._respawning = self._lost and self._task is not None and self.state == "connected"
            if self._respawning:
                self._reap_old_session()  # its transport ended: tear it down while the new one starts
            else:
                await self._stop_session()
            try:
                await self._open(self.settings.connect_timeout_s if timeout is None else timeout)
            finally:
                self._respawning = False

    @property
    def offers_tools(self) -> bool:
        """True while the listed tools should be offered: connected, or being respawned after a crash."""
        return self.state == "connected" or (self.state == "connecting" and self._respawning)

    def _reap_old_session(self) -> None:
        """Stop the current (dead) session in a background task; `close()` waits for it."""
        task, stop, scope = self._task, self._stop, self._scope
        self._task, self._client = None, None
        if stop is not None:
            stop.set()

        async def reap() -> None:
            if task is not None:
                done, _ = await asyncio.wait({task}, timeout=2.0)
                if not done and scope is not None:
                    scope.cancel()
                    await asyncio.wait({task}, timeout=_STOP_WAIT_S)

        reaper = asyncio.get_running_loop().create_task(reap(), name=f"mcp-reap-{self.config.id}")
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _open(self, timeout: float) -> None:
        self._gen += 1
        self.state, self.error = "connecting", None
        ready: asyncio.Future[tuple[Any, list[Any]]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._scope = anyio.CancelScope()
        started = time.perf_counter()
        self._task = asyncio.create_task(self._serve(ready, self._stop, self._scope, self._gen),
                                         name=f"mcp-{self.config.id}")
        try:
            self._client, tools = await asyncio.wait_for(asyncio.shield(ready), timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))  # distinct types before 3.11
            reason = (f"no answer within the {timeout:g} s connect timeout" if timed_out
                      else describe_error(exc))
            tail = self.stderr_tail()
            self.error = reason + (f" (server stderr: {tail})" if tail else "")
            self.state = "failed"
            await self._stop_session()
            log.warning("MCP server %r failed to connect: %s", self.config.id, self.error)
            return
        self.tools = tools
        self._lost = False
        self.state = "connected"
        self._opened += 1
        self.restarts = self._opened - 1
        self.connect_time_s = time.perf_counter() - started
        info = self._client.server_info
        self.server_info = f"{info.name} {info.version or ''}".strip() if info is not None else None

    async def _serve(self, ready: asyncio.Future[tuple[Any, list[Any]]], stop: asyncio.Event,
                     scope: anyio.CancelScope, gen: int) -> None:
        try:
            from mcp import Client
            from mcp.types import Implementation

            with scope:
                client = Client(self._transport(), mode="legacy", cache=None, message_handler=self._on_message,
                                client_info=Implementation(name="agentkit", version="0"))
                async with client:
                    tools = await _list_tools(client)
                    if not ready.done():
                        ready.set_result((client, tools))
                    await stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.info("MCP server %r: session ended with %s", self.config.id, describe_error(exc))
        finally:
            self._mark_lost(gen)
            if not ready.done():
                ready.set_exception(ConnectionError("the session ended before it was ready"))

    async def _stop_session(self) -> None:
        """End the session task (the SDK closes stdin, then terminates the child) and wait for it."""
        task, self._task, self._client = self._task, None, None
        if self._stop is not None:
            self._stop.set()
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=2.0)
        if not done and self._scope is not None:
            self._scope.cancel()
            done, _ = await asyncio.wait({task}, timeout=_STOP_WAIT_S)
        if not done:
            log.warning("MCP server %r: session did not close within %.0f s", self.config.id, _STOP_WAIT_S)

    async def close_session(self) -> None:
        """End the current session (the child is terminated) so that the next `connect()` starts afresh."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.state != "closed":
                await self._stop_session()
                self.state = "idle"

    async def close(self) -> None:
        """Close the session for good (the child process is terminated and reaped)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self.state = "closed"
            await self._stop_session()
            if self._reapers:
                await asyncio.wait(set(self._reapers), timeout=_STOP_WAIT_S + 2.0)
            if self._stderr is not None:
                self._stderr.close()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.info("MCP server %r: transport error: %s", self.config.id, describe_error(message))
            return
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            asyncio.get_running_loop().create_task(self.refresh_tools())

    async def refresh_tools(self) -> None:
        """Refetch the tool list (after `list_changed`) and tell the manager."""
        client = self._client
        if client is None or not self.alive:
            return
        try:
            self.tools = await asyncio.wait_for(_list_tools(client), self.settings.connect_timeout_s)
        except Exception as exc:
            log.warning("MCP server %r: tools/list after list_changed failed: %s", self.config.id,
                        describe_error(exc))
            return
        if self.on_change is not None:
            self.on_change(self)

    # ---- calls ---------------------------------------------------------------------------------
    async def call(self, name: str, arguments: dict[str, Any], *, may_repeat: bool = True) -> Any:
        """Call tool `name` (the server's own name) and return the mcp `CallToolResult`.

        A dead session is respawned first; a connection lost during the call is respawned and
        the call retried once when `may_repeat` (the tool is not annotated destructive).
        Raises McpCallError (timeout, crash, server unreachable) with a message for the model.
        """
        if not self.alive:
            await self._respawn()
        try:
            return await self._call_once(name, arguments)
        except _ConnectionLost as lost:
            self._mark_lost()
            await self._respawn()
            if not may_repeat:
                raise McpCallError(f"MCP server {self.config.id!r} stopped during the call to {name!r} "
                                   f"({lost}); it was restarted, but the call was not repeated because the tool "
                                   "is marked destructive: it may or may not have taken effect") from None
            try:
                return await self._call_once(name, arguments)
            except _ConnectionLost as again:
                self._mark_lost()
                raise McpCallError(f"MCP server {self.config.id!r} stopped during the call to {name!r} twice "
                                   f"({again}); the tool may be crashing its server") from None

    async def _respawn(self) -> None:
        await self.connect()
        if not self.alive:
            raise McpCallError(f"MCP server {self.config.id!r} is unavailable: {self.error}", status="failed")

    async def _call_once(self, name: str, arguments: dict[str, Any]) -> Any:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        client = self._client
        settings = self.settings
        start = anyio.current_time()
        hard = start + settings.hard_timeout_s
        progressed = 0

        with anyio.CancelScope(deadline=min(start + settings.idle_timeout_s, hard)) as scope:
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                nonlocal progressed
                progressed += 1
                self.progress_events += 1
                scope.deadline = min(anyio.current_time() + settings.idle_timeout_s, hard)

            try:
                return await client.call_tool(name, arguments, progress_callback=on_progress)
            except MCPError as exc:
                if exc.code == CONNECTION_CLOSED or self._lost or _session_gone(exc):
                    raise _ConnectionLost("connection closed") from None
                raise McpCallError(f"MCP server {self.config.id!r} rejected the call to {name!r}: "
                                   f"{exc.message}") from None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError, OSError) as exc:
                raise _ConnectionLost(describe_error(exc)) from None
        elapsed = anyio.current_time() - start
        if elapsed >= settings.hard_timeout_s - 0.01:
            why = f"hit the hard cap of {settings.hard_timeout_s:g} s ({progressed} progress updates)"
        else:
            why = (f"sent nothing for {settings.idle_timeout_s:g} s" +
                   (f" after {progressed} progress updates" if progressed else ""))
        raise McpCallError(f"the call to {name!r} on MCP server {self.config.id!r} timed out: it {why}; "
                           "the server was asked to cancel it", status="timeout")


class _ConnectionLost(Exception):
    """The session's transport ended (crash, kill, network); internal to `call`."""


def _session_gone(exc: Any) -> bool:
    """An HTTP server that restarted no longer knows our session (404: "Session not found"/"terminated")."""
    message = str(getattr(exc, "message", "") or "")
    return message.startswith(("Session not found", "Session terminated"))


async def _list_tools(client: Any) -> list[Any]:
    """Every tool of the server, following `next_cursor` (at most 100 pages)."""
    tools: list[Any] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGE_CAP):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
