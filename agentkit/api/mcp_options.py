"""MCP client configuration: `McpServerSourcePy` (Http / Process / WebSocket), `McpServerConfigPy`,
`McpClientConfigPy` (runner-api.md §1.8), validated at construction.

Scope: the mistralrs value types, their argument checks and agentkit's keyword-only extensions
(`required`, tool allow/deny lists, connect timeout, hard call timeout, retry interval).
Re-exported by `agentkit.api.agent_options`, where mistralrs code finds them.

Non-goals: connecting to servers (the MCP plugin, `agentkit.plugins.mcp`).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from agentkit.api.checks import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_list_of,
    check_str,
    check_str_dict,
    check_str_list,
    variant_of,
)

__all__ = ["McpClientConfigPy", "McpServerConfigPy", "McpServerSourcePy"]


class McpServerSourcePy:
    """How to reach an MCP server: `.Http(url, timeout_secs, headers)`, `.Process(command, args,
    work_dir, env)` or `.WebSocket(url, timeout_secs, headers)`; all arguments positional and
    required (pass None explicitly)."""

    Http: ClassVar[type[McpServerSourcePy_Http]]
    Process: ClassVar[type[McpServerSourcePy_Process]]
    WebSocket: ClassVar[type[McpServerSourcePy_WebSocket]]

    @property
    def kind(self) -> str:
        """Variant name: "Http", "Process" or "WebSocket"."""
        return type(self).__qualname__.rsplit(".", 1)[-1]


def _check_url_source(self: Any) -> None:
    owner = type(self).__qualname__
    check_str(owner, "url", self.url)
    check_int(owner, "timeout_secs", self.timeout_secs, optional=True)
    object.__setattr__(self, "headers", check_str_dict(owner, "headers", self.headers))


@variant_of(McpServerSourcePy, "Http")
@dataclass(frozen=True)
class McpServerSourcePy_Http(McpServerSourcePy):
    """JSON-RPC over HTTP; `timeout_secs` per request, extra `headers`."""

    url: str
    timeout_secs: int | None
    headers: dict[str, str] | None

    def __post_init__(self) -> None:
        _check_url_source(self)


@variant_of(McpServerSourcePy, "Process")
@dataclass(frozen=True)
class McpServerSourcePy_Process(McpServerSourcePy):
    """Spawn `command args` in `work_dir` with extra `env`, JSON-RPC over stdio."""

    command: str
    args: list[str] | None
    work_dir: str | None
    env: dict[str, str] | None

    def __post_init__(self) -> None:
        owner = "McpServerSourcePy.Process"
        check_str(owner, "command", self.command)
        object.__setattr__(self, "args", check_str_list(owner, "args", self.args, optional=True))
        object.__setattr__(self, "work_dir", check_str(owner, "work_dir", self.work_dir, optional=True, path=True))
        object.__setattr__(self, "env", check_str_dict(owner, "env", self.env))


@variant_of(McpServerSourcePy, "WebSocket")
@dataclass(frozen=True)
class McpServerSourcePy_WebSocket(McpServerSourcePy):
    """JSON-RPC over a WebSocket (`timeout_secs` currently unused, as upstream)."""

    url: str
    timeout_secs: int | None
    headers: dict[str, str] | None

    def __post_init__(self) -> None:
        _check_url_source(self)


@dataclass
class McpServerConfigPy:
    """One MCP server; its tools are registered as `f"{tool_prefix}_{tool}"` (bare name without prefix).

    agentkit's keyword-only extensions: `required` (the Runner fails to start when this server
    cannot be reached; otherwise it is skipped, reported and retried), `allow_tools` /
    `deny_tools` (fnmatch patterns on the server's own tool names) and `connect_timeout_secs`
    (None = 10 s).
    """

    id: str
    name: str
    source: McpServerSourcePy
    enabled: bool = True
    tool_prefix: str | None = None
    resources: list[str] | None = None
    bearer_token: str | None = None
    _: KW_ONLY
    required: bool = False
    allow_tools: list[str] | None = None
    deny_tools: list[str] | None = None
    connect_timeout_secs: float | None = None

    def __post_init__(self) -> None:
        owner = "McpServerConfigPy"
        check_str(owner, "id", self.id)
        check_str(owner, "name", self.name)
        check_instance(owner, "source", self.source, McpServerSourcePy, optional=False)
        check_bool(owner, "enabled", self.enabled)
        check_str(owner, "tool_prefix", self.tool_prefix, optional=True)
        self.resources = check_str_list(owner, "resources", self.resources, optional=True)
        check_str(owner, "bearer_token", self.bearer_token, optional=True)
        check_bool(owner, "required", self.required)
        self.allow_tools = check_str_list(owner, "allow_tools", self.allow_tools, optional=True)
        self.deny_tools = check_str_list(owner, "deny_tools", self.deny_tools, optional=True)
        self.connect_timeout_secs = check_float(owner, "connect_timeout_secs", self.connect_timeout_secs,
                                                optional=True)
        if self.connect_timeout_secs is not None and not self.connect_timeout_secs > 0:
            raise ValueError(f"{owner}: `connect_timeout_secs` must be > 0, got {self.connect_timeout_secs}")


@dataclass
class McpClientConfigPy:
    """MCP client settings: servers, auto-registration, per-call timeout (None = 30 s) and the
    global concurrent-call cap (None = 10).

    In agentkit `tool_timeout_secs` is an idle timeout: each progress notification of the call
    restarts it, up to the keyword-only `tool_hard_timeout_secs` (None = max(300 s, the idle
    timeout)). `retry_interval_secs` (None = 5 s, doubling up to 5 min) spaces the background
    reconnection attempts of a server that failed.
    """

    servers: list[McpServerConfigPy]
    auto_register_tools: bool = True
    tool_timeout_secs: int | None = None
    max_concurrent_calls: int | None = None
    _: KW_ONLY
    tool_hard_timeout_secs: float | None = None
    retry_interval_secs: float | None = None

    def __post_init__(self) -> None:
        owner = "McpClientConfigPy"
        self.servers = check_list_of(owner, "servers", self.servers, McpServerConfigPy, optional=False)
        check_bool(owner, "auto_register_tools", self.auto_register_tools)
        check_int(owner, "tool_timeout_secs", self.tool_timeout_secs, optional=True, minimum=1)
        check_int(owner, "max_concurrent_calls", self.max_concurrent_calls, optional=True, minimum=1)
        for name in ("tool_hard_timeout_secs", "retry_interval_secs"):
            value = check_float(owner, name, getattr(self, name), optional=True)
            if value is not None and not value > 0:
                raise ValueError(f"{owner}: `{name}` must be > 0 seconds, got {value}")
            setattr(self, name, value)
        ids = [s.id for s in self.servers]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"{owner}: server ids must be unique, {dup} appear more than once")
