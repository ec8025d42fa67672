"""Built-in plugin: registers the local sandboxed executor as "local".

Scope: `LocalExecutorPlugin.register_code_executors(register)` registers
`local_executor_factory(spec: ExecutorSpec) -> CodeExecutor` under the name "local"; a plugin
that registers another name (a remote sandbox service) can replace it in the tool layer's choice.
Listed in `agentkit.plugin_manager.DEFAULT_PLUGINS` as "agentkit.plugins.code_exec:LocalExecutorPlugin"
(registered under that package name); `AGENTKIT_DISABLE_PLUGINS=code_exec` drops it.

Non-goals: tools (the tool layer), starting anything at registration (kernels start on first use).
"""

from __future__ import annotations

from collections.abc import Callable

from agentkit.hookspecs import hookimpl

__all__ = ["LocalExecutorPlugin"]


class LocalExecutorPlugin:
    """Registers the "local" code-executor factory."""

    plugin_name = "code_exec"

    @hookimpl
    def register_code_executors(self, register: Callable[..., None]) -> None:
        """register("local", factory(spec) -> LocalExecutor)."""
        from agentkit.plugins.code_exec.executor import local_executor_factory

        register("local", local_executor_factory)
