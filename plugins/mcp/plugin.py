"""Built-in plugin: mistral.rs's `Runner(mcp_client_config=McpClientConfigPy(...))`, as MCP tool sources.

Scope: `McpPlugin` declares the `mcp_client_config` Runner option, starts an `McpManager` in
`runner_configure` (servers connect in parallel before the model loads; a `required` server that
fails makes `Runner(...)` raise `McpServerError`), registers one `ToolSource` per server through
`register_tool_sources` (tools carry `AgentToolSource.Mcp`), adds a note naming the servers that
are down to each agentic turn (`agent_request_tools` -> `context.notes`), and closes every
session in `runner_shutdown` (also at interpreter exit). `mcp_status()` / `mcp_reconnect()` back
the Runner's methods of the same names (`agentkit.mcp_methods`).

Listed in `agentkit.plugin_manager.DEFAULT_PLUGINS`; importing this module does not import the
`mcp` SDK (only a Runner given `mcp_client_config` does). "agentkit.plugins.mcp:McpPlugin", so `AGENTKIT_DISABLE_PLUGINS=mcp`
disables it.

Non-goals: the MCP mechanics (`.manager`, `.connection`), capping results (the agent loop).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentkit.config import RunnerConfig
from agentkit.errors import NotSupportedError
from agentkit.hookspecs import hookimpl
from agentkit.tools import Tool

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext
    from agentkit.plugins.mcp.manager import McpManager, McpServerStatus

__all__ = ["McpPlugin", "McpToolSource"]


class McpToolSource:
    """The tools of one MCP server, as the plugin host lists them for each request."""

    def __init__(self, manager: McpManager, server_id: str) -> None:
        self.name = f"mcp:{server_id}"
        self.server_id = server_id
        self._manager = manager

    def list_tools(self) -> list[Tool]:
        """The server's tools now (cached; [] while it is down)."""
        return self._manager.tools_of(self.server_id)

    def __repr__(self) -> str:
        return f"McpToolSource({self.server_id!r})"


class McpPlugin:
    """Serves `mcp_client_config`; one instance per Runner."""

    plugin_name = "mcp"

    def __init__(self) -> None:
        self.manager: McpManager | None = None

    @hookimpl
    def runner_options(self) -> list[str]:
        """This plugin serves `Runner(mcp_client_config=...)`."""
        return ["mcp_client_config"]

    @hookimpl
    def runner_configure(self, config: RunnerConfig) -> None:
        """Connect the configured servers (in parallel, each bounded by its connect timeout)."""
        if config.mcp_client_config is None or self.manager is not None:
            return
        try:
            import mcp  # noqa: F401
        except ImportError as exc:
            raise NotSupportedError(f"mcp_client_config needs the mcp SDK ({exc}): pip install 'agentkit[mcp]'") from None
        from agentkit.plugins.mcp.manager import McpManager

        manager = McpManager(config.mcp_client_config, reserved=frozenset(config.tool_callbacks or ()))
        manager.start()
        self.manager = manager
        atexit.register(manager.shutdown)

    @hookimpl
    def register_tool_sources(self, register: Callable[..., None]) -> None:
        """One source per enabled server."""
        if self.manager is not None:
            for server_id in self.manager.server_ids():
                register(McpToolSource(self.manager, server_id))

    @hookimpl
    def agent_request_tools(self, context: ToolContext) -> None:
        """Tell the model which MCP servers are down (their tools are missing); offers no tools itself."""
        if self.manager is not None:
            context.notes.extend(self.manager.notes())

    @hookimpl
    def runner_shutdown(self) -> None:
        """Close every MCP session; no child process is left. Idempotent."""
        if self.manager is not None:  # kept: its status then says "closed"
            self.manager.shutdown()
            atexit.unregister(self.manager.shutdown)

    def mcp_status(self) -> list[McpServerStatus]:
        """Every configured server's status ([] without `mcp_client_config`)."""
        return [] if self.manager is None else self.manager.status()

    def mcp_reconnect(self, server_id: str | None = None, failed_only: bool = True) -> list[McpServerStatus]:
        """Reconnect now: `server_id`, or every failed server (every server when not `failed_only`)."""
        return [] if self.manager is None else self.manager.reconnect(server_id, failed_only)

    def __repr__(self) -> str:
        return f"McpPlugin({'idle' if self.manager is None else self.manager.server_ids()})"
