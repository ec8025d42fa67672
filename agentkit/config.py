"""The Runner's option parser: `RunnerConfig` (what plugins see) and `ModelOptions` (what a model load needs).

Scope:
- `RunnerConfig`: the subset of `Runner(...)` arguments a plugin may serve (models, web search,
  tool callbacks, MCP, code execution, shell, AnyMoE, speculative decoding, seed) plus `extra`,
  a read-only mapping for third-party plugin options. The Runner builds one and passes it to
  `runner_configure`, `register_tool_sources`, `engine_prepare_model` and `engine_draft_proposer`.
- `PLUGIN_OPTIONS` and `check_plugin_options()`: which of those options are served by plugins,
  and the `NotSupportedError` (naming the option and what would provide it) for a given option
  that no registered plugin declares in its `runner_options()` hook.
- `parse_model_options()` -> `ModelOptions`: the per-model load options (`which`, weights/ISQ,
  template, engine and KV-cache knobs), used by both `Runner.__init__` and `Runner.add_model`,
  so a bad option gives the same error through both.
The option objects themselves (`McpClientConfigPy`, `CodeExecutionConfig`, `AnyMoeConfig`, ...)
are validated where they are defined; this module checks the shape of the plain fields.

Non-goals: the engine settings' own validation (`agentkit.engine.config.EngineConfig`), loading
models, calling hooks, and importing torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agentkit.api.enums import PagedCacheType
from agentkit.api.which import Which
from agentkit.engine.config import EngineConfig
from agentkit.engine.loading.device_map import DeviceLayers, parse_num_device_layers
from agentkit.errors import ConfigError, NotSupportedError
from agentkit.models.isq import isq_mode

if TYPE_CHECKING:
    from agentkit.api.agent_options import CodeExecutionConfig, McpClientConfigPy, ShellConfig
    from agentkit.api.model_options import AnyMoeConfig

__all__ = [
    "PLUGIN_OPTIONS",
    "ModelOptions",
    "PluginOption",
    "RunnerConfig",
    "check_plugin_options",
    "given_plugin_options",
    "parse_model_options",
]


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


# ---- options served by plugins -------------------------------------------------------------------


@dataclass(frozen=True)
class PluginOption:
    """A `Runner(...)` option that only a plugin can serve: the feature and what provides it."""

    feature: str
    provider: str


_SEARCH = "the web-search plugin: pip install 'agentkit[search]'"
_CODE = "the code-execution plugin: pip install 'agentkit[code]'"
_SPECULATIVE = "the built-in speculative plugin (remove it from AGENTKIT_DISABLE_PLUGINS)"
_MTP = "a multi-token-prediction plugin (agentkit has no built-in one yet)"

PLUGIN_OPTIONS: Mapping[str, PluginOption] = MappingProxyType({
    "tool_callbacks": PluginOption("Python tool callbacks",
                                   "the built-in tool_callbacks plugin (remove it from AGENTKIT_DISABLE_PLUGINS)"),
    "enable_search": PluginOption("web search", _SEARCH),
    "search_embedding_model": PluginOption("web search", _SEARCH),
    "search_callback": PluginOption("web search", _SEARCH),
    "mcp_client_config": PluginOption("MCP tools", "the built-in MCP plugin (remove `mcp` from "
                                      "AGENTKIT_DISABLE_PLUGINS): pip install 'agentkit[mcp]'"),
    "code_execution_config": PluginOption("code execution", _CODE),
    "shell_config": PluginOption("the shell tool", _CODE),
    "anymoe_config": PluginOption("AnyMoE", "the built-in anymoe plugin (remove it from AGENTKIT_DISABLE_PLUGINS)"),
    "which_draft": PluginOption("draft-model speculative decoding", _SPECULATIVE),
    "speculative_gamma": PluginOption("draft-model speculative decoding", _SPECULATIVE),
    "mtp_model": PluginOption("multi-token-prediction speculative decoding", _MTP),
    "mtp_n_predict": PluginOption("multi-token-prediction speculative decoding", _MTP),
})
"""Every `RunnerConfig` field a plugin serves; a plugin declares the ones it handles in `runner_options()`."""

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunnerConfig)}


def given_plugin_options(config: RunnerConfig) -> list[str]:
    """The plugin-served options of `config` that differ from their default (were given), in table order."""
    return [name for name in PLUGIN_OPTIONS if getattr(config, name) != _DEFAULTS[name]]


def check_plugin_options(config: RunnerConfig, handled: Iterable[str]) -> None:
    """Raise `NotSupportedError` for the given plugin options that no registered plugin handles.

    `handled` is every option name the registered plugins declare (`PluginHost.handled_options()`).
    The message names each unserved option, its feature, and the plugin or extra providing it.
    """
    served = set(handled)
    missing = [name for name in given_plugin_options(config) if name not in served]
    if missing:
        raise NotSupportedError("; ".join(
            f"{name}= ({PLUGIN_OPTIONS[name].feature}) is served by no registered plugin: it needs "
            f"{PLUGIN_OPTIONS[name].provider}, or any plugin whose runner_options() hook returns {name!r}"
            for name in missing))


# ---- per-model load options ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    """One model's validated load options, parsed the same way for `Runner(...)` and `add_model`.

    `weight_mode` is "auto", "dense", "int4" or "int8" (from `weights` / `in_situ_quant`);
    `engine` holds the `EngineConfig` fields that were given (`engine_config(base)` applies them);
    `device_layers` is the parsed `num_device_layers` (None: not given).
    """

    weight_mode: str = "auto"
    chat_template: str | None = None
    jinja_explicit: str | None = None
    engine: Mapping[str, Any] = field(default_factory=dict)
    device_layers: tuple[DeviceLayers, ...] | None = None

    def engine_config(self, base: EngineConfig) -> EngineConfig:
        """A copy of `base` with the given engine fields replaced (validated by `EngineConfig`)."""
        return dataclasses.replace(base, **self.engine)


def parse_model_options(
    which: Which,
    *,
    weights: str = "auto",
    in_situ_quant: str | None = None,
    chat_template: str | None = None,
    jinja_explicit: str | None = None,
    max_seqs: int | None = None,
    no_kv_cache: bool | None = None,
    prefix_cache_n: int | None = None,
    max_seq_len: int | None = None,
    num_threads: int | None = None,
    pa_blk_size: int | None = None,
    pa_cache_type: Any = None,
    paged_attn: bool = False,
    no_paged_attn: bool = False,
    pa_ctxt_len: int | None = None,
    pa_gpu_mem_usage: float | None = None,
    pa_gpu_mem: int | None = None,
    memory_goal: str | float | None = None,
    num_device_layers: list[str] | None = None,
) -> ModelOptions:
    """Validate one model's options (None = not given: the base config's value is kept).

    Giving any KV budget knob (`pa_ctxt_len`, `pa_gpu_mem_usage`, `pa_gpu_mem`, `memory_goal`)
    replaces the whole budget. Raises TypeError for a `which` that is not a `Which` variant or a
    bad `pa_cache_type`, ValueError for an unknown `weights`/`in_situ_quant` or both paged-attention flags.
    """
    if not isinstance(which, Which):
        raise TypeError(f"which must be a Which variant (e.g. Which.GGUF(...)), got {type(which).__name__}")
    if weights not in ("auto", "dense"):
        raise ValueError(f"weights must be 'auto' or 'dense', got {weights!r}")
    if paged_attn and no_paged_attn:
        raise ValueError("paged_attn and no_paged_attn are mutually exclusive")
    engine: dict[str, Any] = {
        k: v for k, v in dict(max_seqs=max_seqs, no_kv_cache=no_kv_cache, prefix_cache_n=prefix_cache_n,
                              max_seq_len=max_seq_len, num_threads=num_threads, block_size=pa_blk_size).items()
        if v is not None}
    if pa_cache_type is not None:
        engine["cache_type"] = _cache_type(pa_cache_type)
    if paged_attn or no_paged_attn:
        engine["paged_attn"] = bool(paged_attn)
    budget = dict(kv_ctxt_len=pa_ctxt_len, kv_mem_usage=pa_gpu_mem_usage, kv_mem_mb=pa_gpu_mem,
                  memory_goal=memory_goal)
    if any(v is not None for v in budget.values()):
        engine.update(budget)
    mode = isq_mode(in_situ_quant) if in_situ_quant is not None else weights
    layers = None if num_device_layers is None else parse_num_device_layers(num_device_layers)
    return ModelOptions(weight_mode=mode, chat_template=chat_template, jinja_explicit=jinja_explicit,
                        engine=MappingProxyType(engine), device_layers=layers)


def _cache_type(value: Any) -> str:
    """PagedCacheType (or its name) -> the engine's cache type string."""
    if isinstance(value, PagedCacheType):
        return "f8e4m3" if value is PagedCacheType.F8E4M3 else "auto"
    if isinstance(value, str) and value.lower() in ("auto", "f8e4m3"):
        return value.lower()
    raise TypeError(f"pa_cache_type must be a PagedCacheType (Auto or F8E4M3), got {value!r}")
