"""A pre-started, never-used executor for the next new session: a warm pool of one.

Scope: `Spare(factory, make_spec)` builds `factory(make_spec())` and starts it (`start()` when the
executor has one) in a background thread (`fill`); `take()` hands it to exactly one new session,
waiting for a build in progress rather than starting a second kernel beside it. A spare is never
shared or reused: it has run no code when taken, and the next `fill` builds a new one from a new
spec (its own workdir and, for the local executor, its own sandbox uid), so isolation is exactly a
cold start's. An unclaimed spare is closed after the idle TTL (`reap`) and at `close`, which also
waits for a build in progress, so no kernel outlives it. A failed build is logged and the session
falls back to a cold start, which raises the real error.

Non-goals: per-session bookkeeping (executor.ExecutorPool), choosing workdirs (the caller's
`make_spec` does), more than one spare.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agentkit.plugins.code_exec.protocol import CodeExecutor, ExecutorSpec

__all__ = ["Spare"]

logger = logging.getLogger(__name__)


class Spare:
    """One executor started ahead of the session that will take it."""

    def __init__(self, factory: Callable[[ExecutorSpec], CodeExecutor], make_spec: Callable[[], ExecutorSpec],
                 *, wait_s: float = 60.0) -> None:
        if not callable(factory) or not callable(make_spec):
            raise TypeError("Spare(factory, make_spec) needs two callables: factory(spec) -> CodeExecutor "
                            "and make_spec() -> ExecutorSpec")
        self.factory, self.make_spec, self.wait_s = factory, make_spec, float(wait_s)
        self._lock = threading.Lock()
        self._ready: tuple[CodeExecutor, ExecutorSpec, float] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def ready(self) -> bool:
        """True when a started spare waits for a session."""
        with self._lock:
            return self._ready is not None

    def fill(self) -> None:
        """Start building a spare in the background unless one is ready or being built."""
        with self._lock:
            if self._closed or self._ready is not None or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._build, name="agentkit-spare-executor", daemon=True)
            self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for a build in progress; True when a spare is ready."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(self.wait_s if timeout_s is None else timeout_s)
        return self.ready

    def take(self) -> tuple[CodeExecutor, ExecutorSpec] | None:
        """The started spare and its spec (waiting for a build in progress), or None: then the
        caller builds one cold. The spare slot is empty afterwards; call `fill` to refill it."""
        self.wait()
        with self._lock:
            found, self._ready = self._ready, None
        return None if found is None else (found[0], found[1])

    def reap(self, idle_ttl_s: float) -> bool:
        """Close a spare that waited for longer than `idle_ttl_s`; True when one was closed."""
        with self._lock:
            found = self._ready
            if found is None or time.monotonic() - found[2] <= idle_ttl_s:
                return False
            self._ready = None
        _close_quietly(found[0])
        return True

    def close(self) -> None:
        """Close the spare, after waiting for a build in progress; later `fill`s do nothing."""
        with self._lock:
            self._closed = True
            found, self._ready = self._ready, None
            thread = self._thread
        if found is not None:
            _close_quietly(found[0])
        if thread is not None:
            thread.join(self.wait_s)  # _build closes what it finishes after _closed was set

    def _build(self) -> None:
        try:
            spec = self.make_spec()
            executor = self.factory(spec)
        except Exception as exc:
            logger.warning("building a spare code executor failed: %s: %s", type(exc).__name__, exc)
            return
        try:
            start = getattr(executor, "start", None)
            if start is not None:
                start()
        except Exception as exc:
            logger.warning("starting a spare code executor failed: %s: %s", type(exc).__name__, exc)
            _close_quietly(executor)
            return
        with self._lock:
            if not self._closed:
                self._ready = (executor, spec, time.monotonic())
                return
        _close_quietly(executor)


def _close_quietly(executor: CodeExecutor) -> None:
    try:
        executor.close()
    except Exception as exc:
        logger.warning("closing a spare code executor failed: %s: %s", type(exc).__name__, exc)
