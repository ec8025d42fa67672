"""The Runner's MCP methods (`mcp_status`, `mcp_reconnect`), an agentkit extension over the MCP plugin.

Scope: a mixin of `agentkit.runner.Runner` that finds the registered MCP plugin (any plugin with
`mcp_status` / `mcp_reconnect` methods: the built-in `agentkit.plugins.mcp` or a replacement)
and forwards to it.

Non-goals: MCP itself (`agentkit.plugins.mcp`); this module imports nothing from it.
"""

from __future__ import annotations

from typing import Any

from agentkit.plugin_host import PluginHost

__all__ = ["McpMethods"]


class McpMethods:
    """Mixin: needs `self._plugins` (the Runner's `PluginHost`)."""

    _plugins: PluginHost

    def _mcp_plugin(self) -> Any | None:
        for plugin in self._plugins.pm.get_plugins():
            if callable(getattr(plugin, "mcp_status", None)) and callable(getattr(plugin, "mcp_reconnect", None)):
                return plugin
        return None

    def mcp_status(self) -> list[Any]:
        """Each configured MCP server's `McpServerStatus` (state, tools, error, restarts, next retry).

        A server that failed is skipped, not fatal: its status says why and when the background
        retry runs. [] when the Runner has no `mcp_client_config` or the MCP plugin is disabled.
        """
        plugin = self._mcp_plugin()
        return [] if plugin is None else plugin.mcp_status()

    def mcp_reconnect(self, server_id: str | None = None, failed_only: bool = True) -> list[Any]:
        """Reconnect MCP servers now and return the new statuses.

        `server_id`: that server only (restarted even if connected); None: every failed server,
        or every server when `failed_only=False`. ValueError for an unknown id.
        """
        plugin = self._mcp_plugin()
        return [] if plugin is None else plugin.mcp_reconnect(server_id, failed_only)
