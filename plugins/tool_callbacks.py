"""Built-in plugin: mistral.rs-style `Runner(tool_callbacks={"name": fn})` as registered tools.

Scope: `ToolCallbacksPlugin(callbacks)` validates the mapping eagerly (so a bad entry fails at
`Runner(...)` time, with mistral.rs's message) and registers each entry through `register_tools`
as `Tool.from_callback(name, cb)`: `cb(tool_name, arguments) -> str`, schema from the callback's
docstring `Args:` section. The core router (`agentkit.plugin_manager`) then runs them.

Why it is not in `DEFAULT_PLUGINS`: it needs the Runner's `tool_callbacks` argument, and a
module-level plugin holding per-Runner state would leak between Runners. The Runner builds
`ToolCallbacksPlugin(tool_callbacks)` and passes it in `make_plugin_manager(plugins=[...])`
(before the user's own plugins, so those are still called first). Its registration name is
"tool_callbacks" (`AGENTKIT_DISABLE_PLUGINS=tool_callbacks` disables it).

Non-goals: `search_callback` (a search provider: the web-search plugin), approval of calls
(wrappers around `agent_execute_tool`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentkit.enums import AgentToolSource
from agentkit.hookspecs import hookimpl
from agentkit.tools import Tool

__all__ = ["ToolCallbacksPlugin"]


class ToolCallbacksPlugin:
    """Registers `tool_callbacks` entries as tools; one instance per Runner."""

    plugin_name = "tool_callbacks"

    def __init__(self, callbacks: Mapping[str, Callable[[str, dict[str, Any]], str]]) -> None:
        if not isinstance(callbacks, Mapping):
            raise TypeError(f"tool_callbacks must be a dict of name -> callable, got {type(callbacks).__name__}")
        tools: list[Tool] = []
        for name, callback in callbacks.items():
            if not isinstance(name, str):
                raise TypeError(f"tool_callbacks must be a dict of name -> callable; key {name!r} is not a str")
            tool = Tool.from_callback(name, callback)
            tool.source = AgentToolSource.User
            tools.append(tool)
        self.tools: tuple[Tool, ...] = tuple(tools)

    @hookimpl
    def register_tools(self, register: Callable[..., None]) -> None:
        """Register one tool per callback."""
        for tool in self.tools:
            register(tool)

    def __repr__(self) -> str:
        return f"ToolCallbacksPlugin({[t.name for t in self.tools]!r})"
