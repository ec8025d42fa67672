"""Agent-related value types of the mistralrs-compatible API (runner-api.md §1.8).

Scope: web-search options, MCP configuration (defined in `agentkit.api.mcp_options`, re-exported here), sandbox / code
execution / shell configuration and approval objects, with the wheel's constructor signatures
and defaults and construction-time checks (TypeError/ValueError naming the field). Permission and
network arguments accept the enum or its string form. File types live in `agentkit.api.files`;
AnyMoE and dynamic-LoRA types in `agentkit.api.model_options` (re-exported here, not in `__all__`).

Non-goals: executing anything (search, MCP, sandboxing, approvals and LoRA loading belong to
the agent layer and plugins).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentkit.api.checks import (
    check_bool,
    check_instance,
    check_int,
    check_str,
    check_str_list,
    variant_of,
)
from agentkit.api.enums import (
    AgentPermission,
    AgentToolApprovalDecisionKind,
    AgentToolKind,
    AgentToolSource,
    CodeExecutionPermission,
    NetworkMode,
    SearchContextSize,
    coerce_permission,
)
from agentkit.api.mcp_options import McpClientConfigPy, McpServerConfigPy, McpServerSourcePy

__all__ = [
    "AgentToolApproval",
    "AgentToolApprovalDecision",
    "AgentToolMetadata",
    "ApproximateUserLocation",
    "CodeExecutionConfig",
    "McpClientConfigPy",
    "McpServerConfigPy",
    "McpServerSourcePy",
    "SandboxPolicy",
    "ShellConfig",
    "ShellSkillMount",
    "WebSearchOptions",
    "WebSearchUserLocation",
]

_WINDOWS = os.name == "nt"


# --- web search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApproximateUserLocation:
    """The user's approximate location, appended to the web-search tool description."""

    city: str
    country: str
    region: str
    timezone: str

    def __post_init__(self) -> None:
        for name in ("city", "country", "region", "timezone"):
            check_str("ApproximateUserLocation", name, getattr(self, name))


class WebSearchUserLocation:
    """User location for web search; build with `WebSearchUserLocation.approximate(loc)`."""

    Approximate: ClassVar[type[WebSearchUserLocation_Approximate]]

    @staticmethod
    def approximate(approximate: ApproximateUserLocation) -> WebSearchUserLocation_Approximate:
        """The `Approximate` variant wrapping `approximate`."""
        return WebSearchUserLocation.Approximate(approximate)


@variant_of(WebSearchUserLocation, "Approximate")
@dataclass(frozen=True)
class WebSearchUserLocation_Approximate(WebSearchUserLocation):
    """Approximate location variant (`type` is "approximate")."""

    approximate: ApproximateUserLocation  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_instance("WebSearchUserLocation.Approximate", "approximate", self.approximate,
                       ApproximateUserLocation, optional=False)

    @property
    def type(self) -> str:
        """Serialized variant tag."""
        return "approximate"

    def description_suffix(self) -> str:
        """Sentence appended to the search tool description."""
        loc = self.approximate
        return f"The user's location is: {loc.city}, {loc.region}, {loc.country}, {loc.timezone}."


_BUDGETS = {SearchContextSize.Low: 4096, SearchContextSize.Medium: 8192, SearchContextSize.High: 16384}


@dataclass
class WebSearchOptions:
    """Enables the web-search tools for one chat request (needs `Runner(enable_search=True)`).

    The keyword-only fields are read-only in the wheel (set only over HTTP); agentkit also
    accepts them here. `filters` = {"allowed_domains": [...], "blocked_domains": [...]}.
    """

    search_context_size: SearchContextSize | None = None
    user_location: WebSearchUserLocation | None = None
    search_description: str | None = None
    extract_description: str | None = None
    filters: dict[str, list[str]] | None = field(default=None, kw_only=True)
    image_settings: dict[str, Any] | None = field(default=None, kw_only=True)
    return_token_budget: str | None = field(default=None, kw_only=True)
    search_content_types: list[str] | None = field(default=None, kw_only=True)
    external_web_access: bool | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        owner = "WebSearchOptions"
        size = self.search_context_size
        if isinstance(size, str) and size.strip().capitalize() in SearchContextSize.__members__:
            self.search_context_size = SearchContextSize[size.strip().capitalize()]
        check_instance(owner, "search_context_size", self.search_context_size, SearchContextSize)
        if isinstance(self.user_location, ApproximateUserLocation):
            self.user_location = WebSearchUserLocation.approximate(self.user_location)
        check_instance(owner, "user_location", self.user_location, WebSearchUserLocation)
        check_str(owner, "search_description", self.search_description, optional=True)
        check_str(owner, "extract_description", self.extract_description, optional=True)
        if self.filters is not None:
            if not isinstance(self.filters, dict) or set(self.filters) - {"allowed_domains", "blocked_domains"}:
                raise ValueError(f"{owner}: `filters` keys must be 'allowed_domains'/'blocked_domains', "
                                 f"got {self.filters!r}")
            self.filters = {k: check_str_list(owner, f"filters[{k!r}]", v, optional=True) for k, v in self.filters.items()}
        if self.return_token_budget not in (None, "default", "unlimited"):
            raise ValueError(f"{owner}: `return_token_budget` must be 'default' or 'unlimited', "
                             f"got {self.return_token_budget!r}")
        check_bool(owner, "external_web_access", self.external_web_access, optional=True)

    def token_budget(self) -> int:
        """Token budget for search results: Low 4096, Medium (default) 8192, High / unlimited 16384."""
        if self.return_token_budget == "unlimited":
            return 16384
        size = self.search_context_size
        return _BUDGETS[SearchContextSize.Medium if size is None else size]


# --- sandbox, code execution, shell -------------------------------------------------------------


@dataclass
class SandboxPolicy:
    """OS-level limits for processes started by the code/shell tools (`network` None = Loopback)."""

    max_memory_mb: int = 2048
    max_cpu_secs: int = 300
    max_procs: int = 64
    max_open_fds: int = 1024
    max_file_sz_mb: int = 256
    network: NetworkMode | str | None = None
    extra_fs_read: list[str] = field(default_factory=list)
    extra_fs_write: list[str] = field(default_factory=list)
    extra_env: list[str] = field(default_factory=list)
    strict: bool = False

    def __post_init__(self) -> None:
        owner = "SandboxPolicy"
        for name in ("max_memory_mb", "max_cpu_secs", "max_procs", "max_open_fds", "max_file_sz_mb"):
            check_int(owner, name, getattr(self, name))
        self.network = NetworkMode.Loopback if self.network is None else coerce_permission(self.network, NetworkMode)
        self.extra_fs_read = check_str_list(owner, "extra_fs_read", self.extra_fs_read, path=True)
        self.extra_fs_write = check_str_list(owner, "extra_fs_write", self.extra_fs_write, path=True)
        self.extra_env = check_str_list(owner, "extra_env", self.extra_env)
        check_bool(owner, "strict", self.strict)


@dataclass
class CodeExecutionConfig:
    """Enables the Python executor tool (`Runner(code_execution_config=...)`); None fields are
    resolved here: python "python3" ("python" on Windows), timeout 60 s, permission Auto.
    `working_directory` None = a per-session temp dir; `sandbox_policy` None = no sandbox.
    `approval_callback(dict) -> bool` is the legacy approval hook."""

    python_path: str | None = None
    timeout_secs: int | None = None
    working_directory: str | None = None
    sandbox_policy: SandboxPolicy | None = None
    permission: CodeExecutionPermission | str | None = None
    approval_callback: Callable[[dict[str, Any]], bool] | None = None

    def __post_init__(self) -> None:
        owner = "CodeExecutionConfig"
        path = check_str(owner, "python_path", self.python_path, optional=True, path=True)
        self.python_path = path if path is not None else ("python" if _WINDOWS else "python3")
        self.timeout_secs = 60 if self.timeout_secs is None else check_int(owner, "timeout_secs", self.timeout_secs, minimum=1)
        self.working_directory = check_str(owner, "working_directory", self.working_directory, optional=True, path=True)
        check_instance(owner, "sandbox_policy", self.sandbox_policy, SandboxPolicy)
        self.permission = (CodeExecutionPermission.Auto if self.permission is None
                           else coerce_permission(self.permission, CodeExecutionPermission))
        if self.approval_callback is not None and not callable(self.approval_callback):
            raise TypeError(f"{owner}: `approval_callback` must be callable, got {self.approval_callback!r}")


@dataclass
class ShellConfig:
    """Enables the shell tool (`Runner(shell_config=...)`); None fields resolved: shell "/bin/sh"
    ("cmd" on Windows), timeout 600 s, permission Auto."""

    shell_path: str | None = None
    timeout_secs: int | None = None
    working_directory: str | None = None
    sandbox_policy: SandboxPolicy | None = None
    permission: AgentPermission | str | None = None

    def __post_init__(self) -> None:
        owner = "ShellConfig"
        path = check_str(owner, "shell_path", self.shell_path, optional=True, path=True)
        self.shell_path = path if path is not None else ("cmd" if _WINDOWS else "/bin/sh")
        self.timeout_secs = 600 if self.timeout_secs is None else check_int(owner, "timeout_secs", self.timeout_secs, minimum=1)
        self.working_directory = check_str(owner, "working_directory", self.working_directory, optional=True, path=True)
        check_instance(owner, "sandbox_policy", self.sandbox_policy, SandboxPolicy)
        self.permission = (AgentPermission.Auto if self.permission is None
                           else coerce_permission(self.permission, AgentPermission))


@dataclass(frozen=True)
class ShellSkillMount:
    """A local skill directory copied into `skills/<name>` of the shell working directory."""

    name: str
    description: str
    source_path: str

    def __post_init__(self) -> None:
        check_str("ShellSkillMount", "name", self.name)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"ShellSkillMount: `name` must be a simple directory name, got {self.name!r}")
        check_str("ShellSkillMount", "description", self.description)
        object.__setattr__(self, "source_path", check_str("ShellSkillMount", "source_path", self.source_path, path=True))


# --- approvals --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentToolMetadata:
    """What an approval is about: tool source, kind and a human label ("Python code", ...)."""

    source: AgentToolSource
    kind: AgentToolKind
    label: str


@dataclass(frozen=True)
class AgentToolApproval:
    """Passed to `agent_approval_callback` when the effective permission is Ask."""

    approval_id: str
    session_id: str
    round: int
    tool: AgentToolMetadata
    arguments_json: str
    code: str | None = None

    def arguments(self) -> Any:
        """The tool arguments, `json.loads(arguments_json)`."""
        return json.loads(self.arguments_json)

    @staticmethod
    def for_call(session_id: str, round: int, tool: AgentToolMetadata, arguments: Any) -> AgentToolApproval:
        """A new approval (`approval_id` "appr_<hex>") for a call; `code` = the "code" argument if a str."""
        args_json = arguments if isinstance(arguments, str) else json.dumps(arguments)
        try:
            parsed = json.loads(args_json)
        except ValueError:
            parsed = None
        code = parsed.get("code") if isinstance(parsed, dict) else None
        return AgentToolApproval(f"appr_{uuid.uuid4().hex}", session_id, round, tool, args_json,
                                 code if isinstance(code, str) else None)


@dataclass(frozen=True)
class AgentToolApprovalDecision:
    """An approval callback's answer; `decision` also accepts "approve"/"deny"."""

    decision: AgentToolApprovalDecisionKind
    remember_for_session: bool = False
    message: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", coerce_permission(self.decision, AgentToolApprovalDecisionKind))
        check_bool("AgentToolApprovalDecision", "remember_for_session", self.remember_for_session)
        check_str("AgentToolApprovalDecision", "message", self.message, optional=True)

    @property
    def approved(self) -> bool:
        """Whether the decision is Approve."""
        return self.decision == AgentToolApprovalDecisionKind.Approve

    @staticmethod
    def approve(remember_for_session: bool = False) -> AgentToolApprovalDecision:
        """Approve (optionally for the rest of the session)."""
        return AgentToolApprovalDecision(AgentToolApprovalDecisionKind.Approve, remember_for_session)

    @staticmethod
    def deny(message: str | None = None) -> AgentToolApprovalDecision:
        """Deny; `message` becomes the tool result the model sees."""
        return AgentToolApprovalDecision(AgentToolApprovalDecisionKind.Deny, False, message)
