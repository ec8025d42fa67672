"""One real ipykernel, started through the sandbox launcher, and the cell-execution loop.

Scope: `SandboxedKernel` starts an ipykernel with jupyter_client over the IPC transport (unix
sockets in the executor's private state dir, so the client reaches a kernel that has no network),
runs cells with `allow_stdin=False` (so `input()` raises), collects stdout/stderr, the last
expression's repr, the traceback and PNG images (inline matplotlib / display_data), and enforces
the deadline: SIGINT at the timeout; if the kernel is not idle after `grace_s`, every process of
the sandbox uid is SIGKILLed and a fresh kernel starts (status "killed"). A kernel that dies on
its own (os._exit, CPU limit) is restarted the same way. RLIMIT_CPU counts a process's whole
life, so before each cell the kernel's limit is moved to its CPU time so far plus the budget
(`prlimit`, as root): every call gets the full CPU budget, however long the session.

Non-goals: deciding the isolation (sandbox.py), shell commands (shell.py), pooling (executor.py).
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import re
import resource
import time
from pathlib import Path
from typing import Any

from agentkit.errors import AgentkitError
from agentkit.plugins.code_exec.protocol import MAX_CAPTURE_CHARS, ExecResult
from agentkit.plugins.code_exec.sandbox import SandboxPlan, sweep_uid, violation_hint

__all__ = ["KernelStartError", "SandboxedKernel"]

logger = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
KERNEL_ARGS = ("--HistoryManager.enabled=False", "--InteractiveShell.colors=nocolor",
               "--IPKernelApp.quiet=True")
RECONNECT_IVL_MS = 5


class KernelStartError(AgentkitError, RuntimeError):
    """The kernel process did not come up (or back up); the message carries its log's tail."""


def _manager_class() -> type:
    from jupyter_client import KernelManager

    class _Manager(KernelManager):
        """Builds the kernel command itself: the sandbox prefix around the kernel interpreter."""

        sandbox_plan: SandboxPlan | None = None
        kernel_python: str = ""
        restarting: bool = False

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            plan = self.sandbox_plan
            assert plan is not None
            # Runs before every (re)start, after the previous kernel was killed: leftovers of the
            # uid (forked children, daemons) go now, so none outlives its kernel.
            if self.restarting:
                sweep_uid(plan.uid)
            self.restarting = True
            if plan.uid is not None:
                os.chown(self.connection_file, plan.uid, plan.gid)
            return plan.command([self.kernel_python, "-m", "ipykernel_launcher", "-f",
                                 self.connection_file, *KERNEL_ARGS])

    return _Manager


class SandboxedKernel:
    """A persistent interpreter for one executor (not thread-safe: the executor serializes)."""

    def __init__(self, plan: SandboxPlan, python: str, workdir: Path, state: Path, *,
                 grace_s: float = 2.0, startup_timeout_s: float = 30.0) -> None:
        self.plan, self.python, self.workdir, self.state = plan, python, workdir, state
        self.grace_s, self.startup_timeout_s = grace_s, startup_timeout_s
        self.km: Any = None
        self.kc: Any = None
        self._log: Any = None

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The kernel process id (the confine launcher execs, so it is the kernel's)."""
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start the kernel and wait until it answers kernel_info."""
        km = _manager_class()(kernel_name="python3")
        km.sandbox_plan, km.kernel_python = self.plan, self.python
        sock = self.state / "sock"
        km.transport, km.ip = "ipc", str(sock / "k")
        km.connection_file = str(sock / "kernel.json")
        self.km = km
        # Kept open while the manager lives: restart_kernel reuses these launch arguments.
        self._log = open(self.state / "kernel.log", "ab")  # noqa: SIM115
        try:
            km.start_kernel(cwd=str(self.workdir), env=dict(self.plan.env), stdout=self._log, stderr=self._log)
        except Exception as exc:
            self._kill()
            self.km = None  # the next call starts afresh
            raise KernelStartError(f"kernel failed to start: {exc}; {self._log_tail()}") from exc
        try:
            self._connect()
        except KernelStartError:
            self.km = None
            raise

    def _connect(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        self.kc = self.km.client()
        # The channels connect before the kernel has bound its sockets; zmq retries a refused
        # connect every RECONNECT_IVL (100 ms by default), which was dead time at every start.
        import zmq

        self.kc.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.kc.start_channels()
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout_s)
        except RuntimeError as exc:
            self._kill()
            raise KernelStartError(f"kernel did not become ready: {exc}; {self._log_tail()}") from exc

    def _wait_ready(self, deadline: float) -> None:
        """kernel_info answered on shell, then any IOPub message (the subscription is live).

        Like `wait_for_ready` without its trailing 0.2 s IOPub flush: cells filter by msg_id.
        """
        while True:
            asked, shell_ok = time.monotonic(), False
            self.kc.kernel_info()
            while time.monotonic() - asked < 1.0:
                channel = self.kc.get_iopub_msg if shell_ok else self.kc.get_shell_msg
                try:
                    msg = channel(timeout=0.05)
                except queue.Empty:
                    continue
                if shell_ok:
                    return
                shell_ok = msg["msg_type"] == "kernel_info_reply"
            if not self.km.is_alive():
                raise RuntimeError("the kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no kernel_info reply within {self.startup_timeout_s:g} s")

    def _log_tail(self) -> str:
        try:
            text = (self.state / "kernel.log").read_text(errors="replace")
        except OSError:
            return "no kernel log"
        return "kernel log: " + (text[-2000:].strip() or "(empty)")

    def restart(self) -> None:
        """Kill the kernel (and every process of its uid) and start a fresh one, same workdir."""
        if self.km is None:
            self.start()
            return
        try:
            self.km.restart_kernel(now=True)
        except Exception as exc:
            raise KernelStartError(f"kernel failed to restart: {exc}; {self._log_tail()}") from exc
        self._connect()

    def _kill(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception as exc:  # already dead, half started
                logger.debug("shutdown_kernel: %s", exc)
            try:
                self.km.cleanup_resources()
            except Exception as exc:
                logger.debug("cleanup_resources: %s", exc)
        sweep_uid(self.plan.uid)
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop the kernel and every process of its uid."""
        self._kill()
        self.km = None

    # ---- execution -----------------------------------------------------------------------------

    def execute(self, code: str, timeout_s: float) -> ExecResult:
        """Run one cell; see the module docstring for the deadline handling."""
        if self.km is None:
            self.start()
        started = time.monotonic()
        out: dict[str, Any] = {"stdout": [], "stderr": [], "result": None, "exception": None, "images": []}
        sizes = {"stdout": 0, "stderr": 0}
        self._renew_cpu_limit()
        msg_id = self.kc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        status = self._collect(msg_id, out, sizes, started + timeout_s)
        if status == "timeout":
            self.km.interrupt_kernel()
            status = self._collect(msg_id, out, sizes, time.monotonic() + self.grace_s)
            if status == "timeout":
                self._note(out, f"did not stop within {self.grace_s:g} s of SIGINT: killed; "
                                "a fresh interpreter was started (variables lost)")
                self.restart()
                status = "killed"
            else:
                status = "timeout"
                self._note(out, f"interrupted after the {timeout_s:g} s timeout (variables kept)")
        elif status == "dead":
            code_ = self._exit_code()
            self._note(out, f"the interpreter died (exit {code_}); a fresh one was started (variables lost)")
            self.restart()
            status = "killed"
        elif status == "idle":
            status = "error" if out["exception"] else "ok"
            self._drain_reply(msg_id)
        return ExecResult(status=status, stdout="".join(out["stdout"]), stderr="".join(out["stderr"]),
                          result=out["result"], exception=out["exception"], images=out["images"],
                          execution_time_ms=(time.monotonic() - started) * 1000.0,
                          isolation=self.plan.report.describe())

    def _renew_cpu_limit(self) -> None:
        """Give this call the full CPU budget: RLIMIT_CPU = CPU seconds used so far + the budget."""
        budget, pid = self.plan.plan.get("rlimits", {}).get("cpu"), self.pid
        if not budget or not self.plan.plan.get("cpu_per_call") or pid is None:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) // os.sysconf("SC_CLK_TCK")
            resource.prlimit(pid, resource.RLIMIT_CPU, (used + 1 + int(budget),) * 2)
        except (OSError, ValueError, IndexError) as exc:  # gone: the cell's result says so
            logger.debug("renewing the CPU limit of %s failed: %s", pid, exc)

    def _exit_code(self) -> int | None:
        proc = getattr(self.km.provisioner, "process", None)
        return None if proc is None else proc.poll()

    @staticmethod
    def _note(out: dict[str, Any], text: str) -> None:
        out["stderr"].append(("\n" if out["stderr"] else "") + f"[agentkit] {text}\n")

    def _collect(self, msg_id: str, out: dict[str, Any], sizes: dict[str, int], deadline: float) -> str:
        """Read iopub until this cell is idle ("idle"), the deadline ("timeout") or death ("dead")."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                msg = self.kc.get_iopub_msg(timeout=min(remaining, 0.25))
            except queue.Empty:
                if not self.km.is_alive():
                    return "dead"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                name = "stderr" if content.get("name") == "stderr" else "stdout"
                self._append(out, sizes, name, content.get("text", ""))
            elif kind in ("execute_result", "display_data"):
                data = content.get("data", {})
                if "image/png" in data:
                    out["images"].append(base64.b64decode(data["image/png"]))
                elif kind == "execute_result" and "text/plain" in data:
                    out["result"] = data["text/plain"]
                elif "text/plain" in data:
                    self._append(out, sizes, "stdout", data["text/plain"] + "\n")
            elif kind == "error":
                trace = _ANSI.sub("", "\n".join(content.get("traceback", [])))
                head = f"{content.get('ename')}: {content.get('evalue')}"
                hint = violation_hint(self.plan.report, head)
                out["exception"] = f"{head}\n{trace}".rstrip() + (f"\n{hint}" if hint else "")
            elif kind == "status" and content.get("execution_state") == "idle":
                return "idle"

    @staticmethod
    def _append(out: dict[str, Any], sizes: dict[str, int], name: str, text: str) -> None:
        room = MAX_CAPTURE_CHARS - sizes[name]
        if room <= 0:
            return
        if len(text) >= room:
            text = text[:room] + f"\n[agentkit] {name} truncated at {MAX_CAPTURE_CHARS} characters\n"
        sizes[name] += len(text)
        out[name].append(text)

    def _drain_reply(self, msg_id: str) -> None:
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                reply = self.kc.get_shell_msg(timeout=max(end - time.monotonic(), 0.01))
            except queue.Empty:
                return
            if reply["parent_header"].get("msg_id") == msg_id:
                return
