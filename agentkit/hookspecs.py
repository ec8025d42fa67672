"""The agentkit plugin contract: the pluggy markers and every hook specification.

Scope: `PROJECT` (the pluggy project name *and* the entry-point group), the `hookspec` and
`hookimpl` markers, and one spec per hook with a docstring stating when it runs, how often, and
what returning `None` means. docs/plugins.md documents the same hooks for plugin authors (a test
keeps the two in sync).

Rules every hook follows:
- Hooks are called with keyword arguments only, through the typed façade in
  `agentkit.plugin_host` (`PluginHost`); an implementation may accept fewer arguments than
  the spec declares, so specs may gain arguments but never rename or drop them.
- Plugins *register things* once per Runner; there are no per-token hooks.
- Types are imported under TYPE_CHECKING only, so `import agentkit.hookspecs` stays light; the
  Runner is annotated as `agentkit.handles.RunnerHandle`, so the contract never depends on the
  façade (`agentkit.runner`), even for types (a test checks the import graph).

Non-goals: building the plugin manager and loading entry points (`agentkit.plugin_manager`),
calling hooks (`agentkit.plugin_host`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch.nn as nn

    from agentkit.agent.context import ToolContext
    from agentkit.config import RunnerConfig
    from agentkit.engine.speculative import DraftProposer, DraftTarget
    from agentkit.handles import RunnerHandle
    from agentkit.sessions import PluginStateStore, Session
    from agentkit.tools import Tool, ToolCall, ToolResult

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "agentkit"
"""The pluggy project name and the entry-point group (`[project.entry-points.agentkit]`)."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---- lifecycle ---------------------------------------------------------------------------------


@hookspec
def runner_options() -> list[str] | None:
    """Name the `Runner(...)` options this plugin serves, e.g. `["mcp_client_config"]`.

    The names come from `agentkit.config.PLUGIN_OPTIONS` (an unknown name is a `PluginError`).
    A Runner given such an option raises `NotSupportedError` unless some registered plugin
    declares it here; the option's value then reaches plugins in `RunnerConfig`.
    When: once per Runner, before `runner_configure`. Every implementation runs (several plugins
    may declare the same option). Return value: a list of option names; None means none.
    """


@hookspec(historic=True)
def runner_configure(config: RunnerConfig) -> None:
    """Receive the Runner's validated configuration.

    When: once per Runner, after its options are validated and before any model loads.
    Historic: a plugin registered later still receives the call when it registers.
    Return value: ignored (historic hooks return nothing to the caller); return None.
    Wrappers are not allowed on historic hooks.
    """


@hookspec
def runner_shutdown(runner: RunnerHandle) -> None:
    """Release resources held for this Runner (MCP sessions, kernels, sandboxes, threads).

    When: when the Runner closes (explicitly or at interpreter exit); at most once per Runner,
    but implementations must be idempotent. Every implementation runs even if another raises
    (errors are logged). Return value: ignored; return None.
    """


# ---- registration: once per Runner; plugins call register(...) ---------------------------------


@hookspec
def register_tools(register: Callable[..., None]) -> None:
    """Register static Python tools with `register(fn_or_tool, name=None)`.

    `fn_or_tool` is an `agentkit.tools.Tool` (used as is, renamed when `name` is given) or a
    plain function (wrapped with `Tool.from_function`: its parameters are the tool arguments).
    When: once per Runner, the first time the tool list is needed; the result is cached.
    A name registered twice raises `PluginError` naming both plugins.
    Return value: ignored; return None (register through the callback).
    """


@hookspec
def register_tool_sources(register: Callable[..., None], config: RunnerConfig) -> None:
    """Register dynamic tool providers with `register(source)` (e.g. one per MCP server).

    A source is any object with a `name` and `list_tools() -> list[Tool]`
    (`agentkit.tools.ToolSource`); its tools are listed when a request starts, and static tools
    win a name clash. When: once per Runner (cached). Return value: ignored; return None.
    """


@hookspec
def register_search_providers(register: Callable[..., None]) -> None:
    """Register web-search providers with `register(name, provider)`.

    `provider(query, options) -> list[SearchResult]`. When: once per Runner (cached).
    A name registered twice raises `PluginError`. Return value: ignored; return None.
    """


@hookspec
def register_code_executors(register: Callable[..., None]) -> None:
    """Register code executors with `register(name, factory)`.

    `factory(spec: ExecutorSpec) -> CodeExecutor` (agentkit.plugins.code_exec.protocol: one
    executor per session; the built-in registers "local", a sandboxed ipykernel + shell).
    When: once per Runner (cached).
    A name registered twice raises `PluginError`. Return value: ignored; return None.
    """


# ---- engine: model-load time only --------------------------------------------------------------


@hookspec
def engine_prepare_model(model: nn.Module, config: RunnerConfig,
                         encode_prompt: Callable[[str], list[int]] | None) -> None:
    """Mutate a freshly loaded model in place (AnyMoE gates, adapters).

    `encode_prompt(text)` gives the token ids of `text` sent as one user message through the
    model's chat template with the generation prompt (raw tokens when it has no template), as a
    chat request would tokenize it; None when the caller has no tokenizer.

    When: once per loaded model, after the weights load and before quantization and KV-cache
    sizing: linear layers still hold the checkpoint's weights (dense tensors, or GGUF's packed
    blocks, dequantized on request), and each decoder layer calls its `mlp` and `self_attn`
    submodules (docs/plugins.md shows the model). Every implementation runs; order them with
    `tryfirst`/`trylast`. Return value: ignored; return None (mutate `model`).
    """


@hookspec(firstresult=True)
def engine_draft_proposer(target: DraftTarget, config: RunnerConfig) -> DraftProposer | None:
    """Return a speculative-decoding proposer (draft model, n-gram lookup) for one loaded model.

    `target` holds the loaded model's engine-side facts (its runner, tokenizer, vocabulary size,
    context length, device) and `load_model(which)` to load a draft model the same way.
    When: once per loaded model, after the KV cache is sized, on the thread that will serve it.
    firstresult: the first non-None return wins and later implementations are not called. The
    built-in speculative plugin answers last (n-gram drafts by default, a draft model with
    `which_draft`); a proposer whose `max_draft` is 0 switches speculation off. Return None when
    this plugin does not provide speculation for `config`.
    """


# ---- agent loop: once per turn or per tool call (never per token) ------------------------------


@hookspec
def agent_request_tools(context: ToolContext) -> list[Tool] | None:
    """Offer tools to one agentic turn, e.g. code execution when `context.request.enable_code_execution`.

    `context` (`agentkit.agent.context.ToolContext`) carries the request, the session, the
    Runner's options, the file store and the turn/round numbers; the returned tools' `fn` close
    over it (to add files with `context.add_file`, size output from `context.remaining_tokens()`).
    A plugin may also append to `context.notes` (shown to the model in a system message at the
    start of the turn), e.g. to say which MCP servers are unavailable.
    When: once per agentic turn, before its first round. Every implementation runs; a tool name
    offered twice (or equal to a registered tool's) raises `PluginError`.
    Return value: the tools for this turn; None or [] when the request does not ask for any.
    """




@hookspec(firstresult=True)
def agent_execute_tool(call: ToolCall, session: Session | None, tool: Tool | None) -> ToolResult | None:
    """Run one tool call the model made and return its `ToolResult`.

    `tool` is the `Tool` the loop resolved for `call.name` among this turn's tools (registered,
    from tool sources, or offered by `agent_request_tools`), None when no tool has that name.
    When: once per tool call in the agent loop. firstresult: the first non-None return is the
    result. Return None when this plugin does not handle `call.name`; the core router (trylast)
    runs `tool.fn`, and returns None for unknown names, in which case the loop reports
    `not_found` or hands the call back to the client. Wrap it with `@hookimpl(wrapper=True)`
    for approval, timeouts, caching or logging; raise `agentkit.errors.CancelToolCall` (in a
    wrapper before `yield`, or in a `tryfirst` implementation) to deny the call.
    """


# ---- session persistence -----------------------------------------------------------------------


@hookspec
def session_dump(session: Session, store: PluginStateStore) -> None:
    """Save plugin state into a session with `store.put(key, json_safe_value)`.

    When: each time a session is saved or exported. Use a key unique to the plugin (its name).
    Return value: ignored; return None.
    """


@hookspec
def session_load(session: Session, store: PluginStateStore) -> None:
    """Restore what `session_dump` saved with `store.get(key, default=None)`.

    When: each time a session is loaded or imported. Tolerate a missing key (sessions saved
    without this plugin). Return value: ignored; return None.
    """

