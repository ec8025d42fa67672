"""The code-executor contract: what a tool layer hands an executor and what it gets back.

Scope: `ExecutorSpec` (how to build one executor), the `CodeExecutor` protocol that local and
remote executors implement, and the `ExecResult` / `ShellResult` values. A plugin registers
`factory(spec: ExecutorSpec) -> CodeExecutor` through `register_code_executors(register)`.

Statuses. `ExecResult.status`: "ok" (ran), "error" (raised; `exception` has the traceback),
"timeout" (interrupted at the deadline; interpreter state kept), "killed" (did not stop within
the grace period, or the kernel died: the process was killed and a fresh interpreter started;
state lost), "denied" (reserved for the tool layer's permission check; executors never return it).
`ShellResult.status`: "success" (exit 0), "error" (non-zero exit), "timeout" (stopped by SIGTERM
at the deadline), "killed" (needed SIGKILL), "denied" (tool layer only).

Non-goals: tool schemas, output caps sized to a model, files surfacing (the tool layer does those).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentkit.api.agent_options import SandboxPolicy
    from agentkit.plugins.code_exec.sandbox import IsolationReport

__all__ = ["CodeExecutor", "ExecResult", "ExecutorSpec", "ShellResult", "MAX_CAPTURE_CHARS"]

MAX_CAPTURE_CHARS = 16 << 20
"""Per stream, per call: text beyond this is dropped (head kept) with a marker, so one runaway
print cannot exhaust the host's memory; the tool layer applies the model-sized cap."""


@dataclass(frozen=True)
class ExecutorSpec:
    """How to build one executor.

    `workdir`: the session's working directory (created if missing). `python_path`: the kernel
    interpreter; None, "python3" or "python" pick the prepared kernel venv (sandbox.kernel_python).
    `policy`: None = the default `SandboxPolicy()` (isolation on where available).
    `extra_env`: variables added to the sandbox's clean environment. `shell_path`: the shell for
    `shell()`. `timeout_s`: the longest call expected (the CPU rlimit is raised to at least it).
    """

    workdir: Path
    python_path: str | None = None
    policy: SandboxPolicy | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    shell_path: str = "/bin/sh"
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not isinstance(self.workdir, (str, Path)):
            raise TypeError(f"ExecutorSpec.workdir must be a path, got {type(self.workdir).__name__}")
        object.__setattr__(self, "workdir", Path(self.workdir))
        if not isinstance(self.extra_env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.extra_env.items()):
            raise TypeError("ExecutorSpec.extra_env must be a dict[str, str]")
        if self.timeout_s <= 0:
            raise ValueError(f"ExecutorSpec.timeout_s must be > 0, got {self.timeout_s}")


@dataclass
class ExecResult:
    """One Python cell's outcome (see the module docstring for `status`)."""

    status: str
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    exception: str | None = None
    images: list[bytes] = field(default_factory=list)
    execution_time_ms: float = 0.0
    isolation: str = ""


@dataclass
class ShellResult:
    """One shell call's outcome (see the module docstring for `status`)."""

    status: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False


@runtime_checkable
class CodeExecutor(Protocol):
    """One session's interpreter and shell, sharing a sandbox and a working directory."""

    isolation: IsolationReport
    workdir: Path

    def execute(self, code: str, timeout_s: float) -> ExecResult:
        """Run `code` in the persistent interpreter; never raises for the code's own errors."""
        ...

    def reset(self) -> None:
        """Replace the interpreter with a fresh one; the workdir and its files stay."""
        ...

    def shell(self, commands: list[str], timeout_s: float) -> ShellResult:
        """Run `commands` as one shell script in the workdir, in the same sandbox."""
        ...

    def close(self) -> None:
        """Stop the interpreter and every process the session started; idempotent."""
        ...
