"""Shell commands in the executor's sandbox and working directory.

Scope: `run_shell()` joins the commands into one script (so `cd` and variables carry from one
line to the next; the exit code is the script's), runs it with the executor's `SandboxPlan` in
its own session, output to files in the private state dir (read back up to MAX_CAPTURE_CHARS per
stream), and stops it at the deadline: SIGTERM to its process group, then after `grace_s`
SIGKILL to every process of that session of the sandbox uid (status "timeout" or "killed").

Non-goals: persistent shell state across calls (each call is a fresh shell in the same workdir),
output caps sized to a model, surfacing files (the tool layer does those).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from agentkit.plugins.code_exec.protocol import MAX_CAPTURE_CHARS, ShellResult
from agentkit.plugins.code_exec.sandbox import SandboxPlan, sweep_uid, violation_hint

__all__ = ["run_shell"]


def _read_capped(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_CAPTURE_CHARS + 1)
    text = data[:MAX_CAPTURE_CHARS].decode("utf-8", errors="replace")
    if len(data) > MAX_CAPTURE_CHARS:
        text += f"\n[agentkit] output truncated at {MAX_CAPTURE_CHARS} bytes\n"
    return text


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_shell(plan: SandboxPlan, shell_path: str, commands: list[str], workdir: Path, state: Path,
              timeout_s: float, *, grace_s: float = 1.0) -> ShellResult:
    """Run `commands` as one `shell_path -c` script; see the module docstring."""
    if isinstance(commands, str) or not all(isinstance(c, str) for c in commands):
        raise TypeError("shell commands must be a list of strings, e.g. ['ls -la', 'echo done']")
    if timeout_s <= 0:
        raise ValueError(f"shell timeout must be > 0 seconds, got {timeout_s}")
    script = "\n".join(commands)
    out_path, err_path = state / "shell.out", state / "shell.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(plan.command([shell_path, "-c", script]), cwd=str(workdir), env=dict(plan.env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    status, timed_out = "", False
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(proc, signal.SIGTERM)
        try:
            code = proc.wait(timeout=grace_s)
            status = "timeout"
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            code = proc.wait()
            status = "killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Children that left the group but not the session, then anything of the uid in that session.
    sweep_uid(plan.uid, sid=proc.pid, deadline_s=2.0)
    if plan.uid is None and timed_out:
        _signal_group(proc, signal.SIGKILL)
    stdout, stderr = _read_capped(out_path), _read_capped(err_path)
    if timed_out:
        stderr += (f"\n[agentkit] timed out after {timeout_s:g} s: "
                   + ("stopped by SIGTERM\n" if status == "timeout" else f"SIGKILLed after {grace_s:g} s grace\n"))
    if not status:
        status = "success" if code == 0 else "error"
    hint = violation_hint(plan.report, stderr) if status == "error" else None
    if hint:
        stderr += f"\n{hint}\n"
    if code is not None and code < 0:
        stderr += f"\n[agentkit] killed by signal {-code}\n" if not timed_out else ""
    return ShellResult(status=status, stdout=stdout, stderr=stderr,
                       exit_code=None if timed_out else code, timed_out=timed_out)
