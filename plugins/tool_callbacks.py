"""Built-in plugin: mistral.rs-style `Runner(tool_callbacks={"name": fn})` as registered tools.

Scope: `ToolCallbacksPlugin` declares the `tool_callbacks` Runner option (`runner_options`),
reads it from the `RunnerConfig` in `runner_configure`, validates the mapping there (so a bad
entry fails at `Runner(...)` time, with mistral.rs's message) and registers each entry through
`register_tools` as `Tool.from_callback(name, cb)`: `cb(tool_name, arguments) -> str`, schema
from the callback's docstring `Args:` section. The core router (`agentkit.plugin_host`) then runs
them.

It is listed in `agentkit.plugin_manager.DEFAULT_PLUGINS` as
"agentkit.plugins.tool_callbacks:ToolCallbacksPlugin", so each Runner gets a fresh instance that
uses only the public hooks, like any third-party plugin; `AGENTKIT_DISABLE_PLUGINS=tool_callbacks`
disables it (then `Runner(tool_callbacks=...)` raises `NotSupportedError`).
`ToolCallbacksPlugin(callbacks)` also works as a plain plugin object (`plugins=[...]`), and then
ignores the Runner's option.

Non-goals: `search_callback` (a search provider: the web-search plugin), approval of calls
(wrappers around `agent_execute_tool`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentkit.api.enums import AgentToolSource
from agentkit.config import RunnerConfig
from agentkit.hookspecs import hookimpl
from agentkit.tools import Tool

__all__ = ["ToolCallbacksPlugin"]


class ToolCallbacksPlugin:
    """Registers `tool_callbacks` entries as tools; one instance per Runner."""

    plugin_name = "tool_callbacks"

    def __init__(self, callbacks: Mapping[str, Callable[[str, dict[str, Any]], str]] | None = None) -> None:
        self._from_config = callbacks is None
        self.tools: tuple[Tool, ...] = () if callbacks is None else _tools(callbacks)

    @hookimpl
    def runner_options(self) -> list[str]:
        """This plugin serves `Runner(tool_callbacks=...)`."""
        return ["tool_callbacks"]

    @hookimpl
    def runner_configure(self, config: RunnerConfig) -> None:
        """Take the Runner's `tool_callbacks` (unless this instance was built with its own)."""
        if self._from_config and config.tool_callbacks is not None:
            self.tools = _tools(config.tool_callbacks)

    @hookimpl
    def register_tools(self, register: Callable[..., None]) -> None:
        """Register one tool per callback."""
        for tool in self.tools:
            register(tool)

    def __repr__(self) -> str:
        return f"ToolCallbacksPlugin({[t.name for t in self.tools]!r})"


def _tools(callbacks: Mapping[str, Callable[[str, dict[str, Any]], str]]) -> tuple[Tool, ...]:
    """One user-sourced `Tool` per entry; TypeError (mistral.rs's message) for a bad mapping."""
    if not isinstance(callbacks, Mapping):
        raise TypeError(f"tool_callbacks must be a dict of name -> callable, got {type(callbacks).__name__}")
    tools: list[Tool] = []
    for name, callback in callbacks.items():
        if not isinstance(name, str):
            raise TypeError(f"tool_callbacks must be a dict of name -> callable; key {name!r} is not a str")
        tool = Tool.from_callback(name, callback)
        tool.source = AgentToolSource.User
        tools.append(tool)
    return tuple(tools)
