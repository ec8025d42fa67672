"""Sandboxed code execution: a real ipykernel and a shell per session, isolated by the OS.

Scope: the execution half of `mistralrs_execute_python` / `mistralrs_shell`. Modules:
`protocol` (ExecutorSpec, CodeExecutor, ExecResult, ShellResult), `sandbox` (what isolation
applies, IsolationReport, the `AGENTKIT_SANDBOX=off` escape hatch), `confine` (the stdlib-only
launcher that applies it), `kernel` (the jupyter_client loop), `shell` (commands), `executor`
(LocalExecutor, ExecutorPool) and `plugin` (registers the "local" factory through
`register_code_executors`). jupyter_client is imported only when a kernel starts.

The tool layer on top: `request_tools` (`CodeExecPlugin`, the built-in registered as
"agentkit.plugins.code_exec:CodeExecPlugin": the "local" factory plus the per-turn tools),
`tools`, `descriptions`, `outputs`, `mounts` and `approval`.
"""

from agentkit.plugins.code_exec.executor import ExecutorPool, LocalExecutor, local_executor_factory
from agentkit.plugins.code_exec.kernel import KernelStartError
from agentkit.plugins.code_exec.plugin import LocalExecutorPlugin
from agentkit.plugins.code_exec.protocol import CodeExecutor, ExecResult, ExecutorSpec, ShellResult
from agentkit.plugins.code_exec.request_tools import CodeExecPlugin
from agentkit.plugins.code_exec.sandbox import IsolationReport, SandboxUnavailableError, sandbox_disabled

__all__ = [
    "CodeExecPlugin",
    "CodeExecutor",
    "ExecResult",
    "ExecutorPool",
    "ExecutorSpec",
    "IsolationReport",
    "KernelStartError",
    "LocalExecutor",
    "LocalExecutorPlugin",
    "SandboxUnavailableError",
    "ShellResult",
    "local_executor_factory",
    "sandbox_disabled",
]
