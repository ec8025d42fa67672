"""Built-in MCP client plugin: `Runner(mcp_client_config=...)` (see `agentkit.plugins.mcp.plugin`).

Modules: `loop_thread` (the event loop thread), `connection` (one server: transport, session,
calls, respawn), `naming` (unique tool names), `results` (MCP <-> agentkit values), `manager`
(all servers: start, status, retries, tools) and `plugin` (the hooks). Importing this package
does not import the `mcp` SDK; a Runner given `mcp_client_config` does.
"""

from agentkit.plugins.mcp.plugin import McpPlugin, McpToolSource

__all__ = ["McpPlugin", "McpToolSource"]
