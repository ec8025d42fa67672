"""`RunnerConfig`: the Runner options that plugins see, as one frozen value.

Scope: the subset of `Runner(...)` arguments a plugin may need (models, web search, tool
callbacks, MCP, code execution, shell, AnyMoE, speculative decoding, seed) plus `extra`, a
read-only mapping for third-party plugin options. The Runner builds one `RunnerConfig` and passes
it to `runner_configure`, `register_tool_sources`, `engine_prepare_model` and
`engine_draft_proposer`. The option objects themselves (`McpClientConfigPy`,
`CodeExecutionConfig`, `AnyMoeConfig`, ...) are validated where they are defined; this module
only checks the shape of the few plain fields it owns.

Non-goals: engine settings (KV cache, paging, devices: `agentkit.engine.config.EngineConfig`),
parsing `Runner` keyword arguments, and importing torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agentkit.errors import ConfigError

if TYPE_CHECKING:
    from agentkit.agent_types import CodeExecutionConfig, McpClientConfigPy, ShellConfig
    from agentkit.model_types import AnyMoeConfig
    from agentkit.which import Which

__all__ = ["RunnerConfig"]


@dataclass(frozen=True)
class RunnerConfig:
    """The Runner options plugins care about; immutable, one per Runner.

    `model_id` is the default model's id and `model_ids` every model the Runner serves (the
    default first). The other fields mirror the `Runner(...)` arguments of the same name
    (None = not given). `extra` carries options for third-party plugins: key them by plugin name
    (`extra={"unit_converter": {...}}`); it is copied into a read-only mapping.
    """

    model_id: str | None = None
    model_ids: tuple[str, ...] = ()
    enable_search: bool = False
    search_embedding_model: str | None = None
    search_callback: Callable[..., Any] | None = None
    tool_callbacks: Mapping[str, Callable[[str, dict[str, Any]], str]] | None = None
    mcp_client_config: McpClientConfigPy | None = None
    code_execution_config: CodeExecutionConfig | None = None
    shell_config: ShellConfig | None = None
    anymoe_config: AnyMoeConfig | None = None
    which_draft: Which | None = None
    speculative_gamma: int = 32
    mtp_model: str | None = None
    mtp_n_predict: int | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model_id is not None and not isinstance(self.model_id, str):
            raise TypeError(f"RunnerConfig.model_id must be a str or None, got {type(self.model_id).__name__}")
        if isinstance(self.model_ids, str) or not all(isinstance(m, str) for m in self.model_ids):
            raise TypeError(f"RunnerConfig.model_ids must be a sequence of str, got {self.model_ids!r}")
        object.__setattr__(self, "model_ids", tuple(self.model_ids))
        if self.model_id is not None and not self.model_ids:
            object.__setattr__(self, "model_ids", (self.model_id,))
        if not isinstance(self.enable_search, bool):
            raise TypeError(f"RunnerConfig.enable_search must be a bool, got {self.enable_search!r}")
        if self.search_callback is not None and not callable(self.search_callback):
            raise TypeError(f"RunnerConfig.search_callback must be callable, got {type(self.search_callback).__name__}")
        if self.tool_callbacks is not None:
            if not isinstance(self.tool_callbacks, Mapping):
                raise TypeError("tool_callbacks must be a dict of name -> callable, "
                                f"got {type(self.tool_callbacks).__name__}")
            object.__setattr__(self, "tool_callbacks", MappingProxyType(dict(self.tool_callbacks)))
        for name in ("speculative_gamma", "mtp_n_predict", "seed"):
            value = getattr(self, name)
            if (value is not None or name == "speculative_gamma") and (isinstance(value, bool)
                                                                      or not isinstance(value, int)):
                raise TypeError(f"RunnerConfig.{name} must be an int, got {value!r}")
        if self.speculative_gamma < 1:
            raise ConfigError(f"speculative_gamma must be >= 1, got {self.speculative_gamma}")
        if self.mtp_n_predict is not None and self.mtp_n_predict < 1:
            raise ConfigError(f"mtp_n_predict must be >= 1 (or None), got {self.mtp_n_predict}")
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"RunnerConfig.extra must be a mapping, got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def plugin_options(self, plugin_name: str) -> Mapping[str, Any]:
        """`extra[plugin_name]` as a mapping (empty when absent): a plugin's own options."""
        value = self.extra.get(plugin_name, {})
        if not isinstance(value, Mapping):
            raise TypeError(f"RunnerConfig.extra[{plugin_name!r}] must be a mapping of options, "
                            f"got {type(value).__name__}")
        return value
