"""Plugins and helpers shared by the plugin tests (test_plugins, test_plugin_host, test_tool_router)."""

from __future__ import annotations

from agentkit.hookspecs import hookimpl
from agentkit.plugin_host import PluginHost


def host_of(*plugins: object) -> PluginHost:
    return PluginHost.create(plugins, builtins=False, entry_points=False)



def add(a: int, b: int = 2) -> str:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return str(a + b)


class AddPlugin:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def register_tools(self, register):
        self.calls += 1
        register(add)
