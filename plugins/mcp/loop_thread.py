"""One asyncio event loop on a daemon thread, for the MCP sessions of one Runner.

Scope: `LoopThread` starts the loop, runs coroutines on it from any other thread (`run`, with a
deadline; `submit`, fire and forget) and stops it, cancelling what is still pending. MCP
sessions are async context managers that must be entered and left on one loop; the Runner and
its tools are synchronous, so every MCP call crosses into this loop.

Non-goals: anything MCP-specific (`agentkit.plugins.mcp.connection`), thread pools.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class LoopThread:
    """An event loop running on its own daemon thread until `stop()`."""

    def __init__(self, name: str = "agentkit-mcp") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    @property
    def alive(self) -> bool:
        """True until `stop()` ended the loop."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_loop(self) -> bool:
        """True when called from the loop's own thread (blocking on it there would deadlock)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule `coro` on the loop; its concurrent future."""
        if not self.alive:
            coro.close()
            raise RuntimeError("the MCP event loop is stopped (the Runner was shut down)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run `coro` on the loop and wait for its result; TimeoutError (and the task cancelled) after `timeout`."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("LoopThread.run() called from the loop's own thread")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result after {timeout:g} s") from None

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every pending task, give them `timeout` seconds to unwind, then end the loop. Idempotent."""
        if not self.alive:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        if not self.in_loop():
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(timeout + 1)
            except Exception as exc:
                log.warning("MCP loop: tasks did not unwind in %.0f s: %s", timeout, exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop():
            self._thread.join(timeout)
