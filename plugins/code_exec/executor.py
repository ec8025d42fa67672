"""The local executor (a sandboxed kernel + shell per session) and the per-session pool.

Scope: `LocalExecutor(spec)` implements `CodeExecutor`: it plans the sandbox at construction
(so `isolation` is known before any code runs, and a strict policy fails early), starts its
kernel on the first `execute`, serializes calls, and on `close` kills the kernel and every
process of its sandbox uid, then deletes its private state dir (never the workdir); executors
still open at interpreter exit are closed then (and a kernel whose host process dies exits by
itself: ipykernel polls its parent). `ExecutorPool(factory, idle_ttl_s)` keeps one executor per
session id, reaps idle ones (last `get` or last call, never while a call runs) from a daemon
thread, and closes all at `close_all()`. With `spare=make_spec` it also keeps one started,
never-used executor for the next new session (spare.py), which `claim(session_id)` hands out.
Files the host writes into the workdir (root-owned) are handed to the sandbox uid before each
call. `execute`/`reset` raise `KernelStartError` (an AgentkitError) only when no kernel can be started.

Non-goals: tool schemas and approvals (the tool layer), choosing the workdir (the caller passes it).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from agentkit.plugins.code_exec.kernel import SandboxedKernel
from agentkit.plugins.code_exec.protocol import CodeExecutor, ExecResult, ExecutorSpec, ShellResult
from agentkit.plugins.code_exec.sandbox import (
    IsolationReport,
    kernel_python,
    plan_sandbox,
    prepare_dirs,
    release_uid,
    sweep_uid,
)
from agentkit.plugins.code_exec.shell import run_shell
from agentkit.plugins.code_exec.spare import Spare

__all__ = ["ExecutorPool", "LocalExecutor", "local_executor_factory"]

logger = logging.getLogger(__name__)


class LocalExecutor:
    """A sandboxed ipykernel and shell sharing one workdir and one sandbox uid."""

    def __init__(self, spec: ExecutorSpec, *, grace_s: float = 2.0) -> None:
        if not isinstance(spec, ExecutorSpec):
            raise TypeError(f"LocalExecutor needs an ExecutorSpec, got {type(spec).__name__}")
        self.spec = spec
        self.workdir = spec.workdir.resolve()
        self.python = kernel_python(spec.python_path)
        self.state = Path(tempfile.mkdtemp(prefix="agentkit-sbx-"))
        try:
            self.plan = plan_sandbox(spec.policy, self.python, self.workdir, self.state,
                                     timeout_s=spec.timeout_s, extra_env=spec.extra_env)
        except BaseException:
            shutil.rmtree(self.state, ignore_errors=True)
            raise
        try:
            prepare_dirs(self.plan, self.workdir, self.state)
        except BaseException:
            release_uid(self.plan)
            shutil.rmtree(self.state, ignore_errors=True)
            raise
        self.isolation: IsolationReport = self.plan.report
        self._kernel = SandboxedKernel(self.plan, self.python, self.workdir, self.state, grace_s=grace_s)
        self._lock = threading.RLock()
        self._closed = False
        self._calls = 0
        self.last_used = time.monotonic()
        _live.add(self)

    @property
    def closed(self) -> bool:
        """True after `close()` (the pool then builds a new executor for the session)."""
        return self._closed

    @property
    def busy(self) -> bool:
        """True while a call runs (the pool never reaps a busy executor)."""
        return self._calls > 0

    def _call(self, fn, *args):
        self._calls += 1
        try:
            with self._lock:
                self._check_open()
                self._adopt_host_files()
                return fn(*args)
        finally:
            self._calls -= 1
            self.last_used = time.monotonic()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this executor is closed; get a new one from the pool")

    def _adopt_host_files(self) -> None:
        """Give root-owned entries that the host put in the workdir (input files, skills) to the
        sandbox uid, so code may modify them; symlinks are never followed."""
        uid, gid = self.plan.uid, self.plan.gid
        if uid is None or gid is None or self.workdir.stat().st_uid != uid:
            return
        for entry in os.scandir(self.workdir):
            if entry.stat(follow_symlinks=False).st_uid != 0:
                continue
            os.chown(entry.path, uid, gid, follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                for top, dirs, files in os.walk(entry.path):
                    for name in dirs + files:
                        os.chown(os.path.join(top, name), uid, gid, follow_symlinks=False)

    def start(self) -> None:
        """Start the kernel now (otherwise the first `execute` does)."""
        with self._lock:
            self._check_open()
            if self._kernel.km is None:
                self._kernel.start()

    @property
    def kernel_pid(self) -> int | None:
        """The running kernel's pid, None before the first start."""
        return self._kernel.pid

    def execute(self, code: str, timeout_s: float) -> ExecResult:
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        return self._call(self._kernel.execute, code, timeout_s)

    def reset(self) -> None:
        self._call(self._kernel.restart)

    def shell(self, commands: list[str], timeout_s: float) -> ShellResult:
        return self._call(run_shell, self.plan, self.spec.shell_path, commands, self.workdir, self.state, timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._kernel.close()
            finally:
                sweep_uid(self.plan.uid)  # shell leftovers too, even if no kernel ever started
                release_uid(self.plan)
                shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_executor_factory(spec: ExecutorSpec) -> CodeExecutor:
    """The factory registered as "local" through `register_code_executors`."""
    return LocalExecutor(spec)


_live: weakref.WeakSet[LocalExecutor] = weakref.WeakSet()


@atexit.register
def _close_live_executors() -> None:
    for executor in list(_live):
        _close_quietly(executor)


class ExecutorPool:
    """Executors by session id; idle ones are closed after `idle_ttl_s` (reaper thread). An
    executor's optional `busy` / `last_used` attributes (LocalExecutor has both) refine "idle".
    `spare`: makes the spec (a fresh workdir) of the next new session's executor, which is then
    built and started ahead of time; `claim` hands it out; unclaimed, it is closed like an idle
    executor after `idle_ttl_s` and at `close_all`."""

    def __init__(self, factory: Callable[[ExecutorSpec], CodeExecutor] = local_executor_factory,
                 idle_ttl_s: float = 3600.0, *, reap_every_s: float | None = None,
                 spare: Callable[[], ExecutorSpec] | None = None) -> None:
        if not callable(factory):
            raise TypeError("ExecutorPool(factory=...) must be callable: factory(spec) -> CodeExecutor")
        if idle_ttl_s <= 0:
            raise ValueError(f"ExecutorPool idle_ttl_s must be > 0 seconds, got {idle_ttl_s}")
        self.factory, self.idle_ttl_s = factory, float(idle_ttl_s)
        self.reap_every_s = reap_every_s or min(max(self.idle_ttl_s / 4, 0.05), 300.0)
        self._executors: dict[str, tuple[CodeExecutor, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        if spare is not None and not callable(spare):
            raise TypeError("ExecutorPool(spare=...) must be callable: spare() -> ExecutorSpec, or None")
        self.spare = Spare(factory, spare) if spare is not None else None
        self._starting: threading.Thread | None = None

    def wait_spare(self, timeout_s: float = 60.0) -> bool:
        """Wait until the spare is started (after a cold-claimed session's own start); True when ready."""
        if self.spare is None:
            return False
        end = time.monotonic() + timeout_s
        if self._starting is not None:
            self._starting.join(timeout_s)
        return self.spare.wait(max(end - time.monotonic(), 0.0))

    def claim(self, session_id: str) -> tuple[CodeExecutor, ExecutorSpec]:
        """A new session's executor and its spec: the started spare (waiting for one being built),
        else one built now from the spare's spec maker and started in the background (its first call
        waits for it); the spare is refilled in the background."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("ExecutorPool.claim needs a non-empty session id string")
        if self.spare is None:
            raise ValueError("ExecutorPool.claim needs a pool built with spare=make_spec; use get(session_id, spec)")
        with self._lock:
            if session_id in self._executors:
                raise ValueError(f"session {session_id!r} already has an executor; use get(session_id, spec)")
        taken = self.spare.take()
        if taken is None:  # start it now, beside the model's first turn; then refill the spare
            spec = self.spare.make_spec()
            taken = (self.factory(spec), spec)
            self._starting = threading.Thread(target=self._start_then_fill, args=(taken[0],),
                                              name="agentkit-executor-start", daemon=True)
            self._starting.start()
        else:
            self.spare.fill()
        with self._lock:
            self._executors[session_id] = (taken[0], time.monotonic())
            self._ensure_reaper()
        return taken

    def get(self, session_id: str, spec: ExecutorSpec) -> CodeExecutor:
        """The session's executor, built from `spec` on first use (later specs are ignored)."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("ExecutorPool.get needs a non-empty session id string")
        with self._lock:
            found = self._executors.get(session_id)
            if found is None or getattr(found[0], "closed", False):
                executor = self.factory(spec)
            else:
                executor = found[0]
            self._executors[session_id] = (executor, time.monotonic())
            self._ensure_reaper()
            return executor

    def _start_then_fill(self, executor: CodeExecutor) -> None:
        start = getattr(executor, "start", None)
        try:
            if start is not None:
                start()
        except Exception as exc:  # the session's first call starts it again and reports the error
            logger.info("starting a new session's executor ahead of its first call failed: %s: %s",
                        type(exc).__name__, exc)
        if self.spare is not None:
            self.spare.fill()

    def __contains__(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._executors

    def __len__(self) -> int:
        with self._lock:
            return len(self._executors)

    def close(self, session_id: str) -> bool:
        """Close and forget one session's executor; False when there was none."""
        with self._lock:
            found = self._executors.pop(session_id, None)
        if found is None:
            return False
        _close_quietly(found[0])
        return True

    def reap(self) -> list[str]:
        """Close executors idle for longer than the TTL; returns their session ids."""
        now = time.monotonic()
        with self._lock:
            stale = [sid for sid, (executor, got) in self._executors.items()
                     if now - max(got, getattr(executor, "last_used", 0.0)) > self.idle_ttl_s
                     and not getattr(executor, "busy", False)]
            closing = [self._executors.pop(sid)[0] for sid in stale]
        for executor in closing:
            _close_quietly(executor)
        if self.spare is not None:
            self.spare.reap(self.idle_ttl_s)
        return stale

    def close_all(self) -> None:
        """Close every executor (the spare too, waiting for one being built) and stop the reaper."""
        self._stop.set()
        if self.spare is not None:
            self.spare.close()
        with self._lock:
            closing = [executor for executor, _ in self._executors.values()]
            self._executors.clear()
        for executor in closing:
            _close_quietly(executor)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._stop.clear()
            self._reaper = threading.Thread(target=self._reap_loop, name="agentkit-executor-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.reap_every_s):
            self.reap()


def _close_quietly(executor: CodeExecutor) -> None:
    try:
        executor.close()
    except Exception as exc:
        logger.warning("closing a code executor failed: %s: %s", type(exc).__name__, exc)
