"""Runner: the mistralrs-compatible façade over one or more loaded models.

Construction loads the model synchronously (with a progress bar) and starts its engine thread.
Every method may be called from any thread at once: requests are tokenized in the caller's
thread and continuously batched by the engine. Errors follow mistralrs: `ValueError` for bad
requests and unknown models, `TypeError` for wrong argument types. More models can be added
with `add_model`; the table (aliases, default, unload/reload, in-flight leases) lives in
`agentkit.models.table`. Plugins (`plugins=`, entry points, `tool_callbacks`) are managed by a
`PluginHost`; chat requests that involve tools run through `agentkit.agent.loop`, whose sessions
live in the session store (`session_store=`; memory by default).

Options are parsed by `agentkit.config` (the same parser for `__init__` and `add_model`). The
plugin-served ones (web search, MCP, code execution, shell, AnyMoE, speculative decoding,
`tool_callbacks`) reach plugins in `RunnerConfig`; one that no registered plugin declares in
`runner_options()` raises `NotSupportedError` naming what would provide it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from agentkit.agent.loop import AgentLoop
from agentkit.agent.runner_sessions import SessionMethods
from agentkit.agent.tool_limits import ToolLimits
from agentkit.api.requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from agentkit.api.responses import (
    CalibrationStatus,
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    CompletionResponse,
)
from agentkit.api.which import Which
from agentkit.chat.processing import (
    ChatStream,
    collect_chat,
    collect_completion,
    prepare_chat,
    prepare_completion,
)
from agentkit.chat.streams import LeasedStream, aiter_stream
from agentkit.config import ModelOptions, RunnerConfig, check_plugin_options, parse_model_options
from agentkit.engine.config import EngineConfig
from agentkit.engine.loading.hub import parse_token_source
from agentkit.engine.sequence import EngineRequest, RequestOutput
from agentkit.file_store import FileStore
from agentkit.mcp_methods import McpMethods
from agentkit.models import calibration
from agentkit.models.anymoe import AnyMoeMethods
from agentkit.models.local import EmbeddingHost, load_model, model_name
from agentkit.models.management import ModelManagement
from agentkit.models.served import ServedModel
from agentkit.models.table import Lease, ModelTable
from agentkit.plugin_host import PluginHost
from agentkit.session_directory import open_session_store
from agentkit.session_store import MemorySessionStore, SessionStore

log = logging.getLogger("agentkit")


class Runner(ModelManagement, SessionMethods, McpMethods, AnyMoeMethods):
    """Load a model and serve chat/completion requests (the mistralrs `Runner` API).

    Positional arguments and defaults are mistralrs 0.9.5's. agentkit's keyword-only extras:
    `plugins` (plugin objects, called before entry-point plugins), `session_store` (a directory
    path or a `SessionStore`: agentic sessions then survive restarts), `max_sessions` and
    `session_idle_ttl_s` (the in-memory store's cap and idle expiry), `tool_timeout_secs` and
    `tool_output_max_tokens` (per tool call: seconds before the model gets a timeout result, and
    the most tokens of a result it sees, default a quarter of the context), plus the engine knobs
    (`pa_*`, `max_seq_len`, `num_threads`, `device`, `weights`, `progress`) and
    `request_timeout_secs` (every request's default deadline; `timeout_secs` on a request overrides),
    and `plugin_options` (`{plugin name: {option: value}}`, what plugins read as `RunnerConfig.extra`).
    """

    def __init__(
        self,
        which: Which,
        max_seqs: int = 16,
        no_kv_cache: bool = False,
        prefix_cache_n: int = 16,
        token_source: str = "cache",
        mtp_model: str | None = None,
        mtp_n_predict: int | None = None,
        chat_template: str | None = None,
        jinja_explicit: str | None = None,
        num_device_layers: list[str] | None = None,
        in_situ_quant: str | None = None,
        anymoe_config: Any = None,
        memory_goal: str | float | None = None,
        pa_blk_size: int | None = None,
        pa_cache_type: Any = None,
        no_paged_attn: bool = False,
        paged_attn: bool = False,
        seed: int | None = None,
        enable_search: bool = False,
        search_embedding_model: str | None = None,
        search_callback: Any = None,
        tool_callbacks: Any = None,
        mcp_client_config: Any = None,
        code_execution_config: Any = None,
        shell_config: Any = None,
        *,
        pa_gpu_mem: int | None = None,
        pa_gpu_mem_usage: float | None = None,
        pa_ctxt_len: int | None = None,
        which_draft: Which | None = None,
        speculative_gamma: int = 32,
        max_seq_len: int | None = None,
        num_threads: int | None = None,
        request_timeout_secs: float | None = None,
        device: str | None = None,
        weights: str = "auto",
        progress: bool = True,
        plugins: Sequence[object] = (),
        session_store: SessionStore | str | os.PathLike[str] | None = None,
        max_sessions: int = 128,
        session_idle_ttl_s: float | None = 1800.0,
        tool_timeout_secs: float | None = None,
        tool_output_max_tokens: int | None = None,
        plugin_options: Mapping[str, Any] | None = None,
    ) -> None:
        options = parse_model_options(
            which, weights=weights, in_situ_quant=in_situ_quant, chat_template=chat_template,
            jinja_explicit=jinja_explicit, max_seqs=max_seqs, no_kv_cache=no_kv_cache, prefix_cache_n=prefix_cache_n,
            max_seq_len=max_seq_len, num_threads=num_threads, pa_blk_size=pa_blk_size, pa_cache_type=pa_cache_type,
            paged_attn=paged_attn, no_paged_attn=no_paged_attn, pa_ctxt_len=pa_ctxt_len,
            pa_gpu_mem_usage=pa_gpu_mem_usage, pa_gpu_mem=pa_gpu_mem, memory_goal=memory_goal,
            num_device_layers=num_device_layers)
        self._plugins = self._make_plugins(plugins, RunnerConfig(
            model_id=model_name(which), enable_search=enable_search, search_embedding_model=search_embedding_model,
            search_callback=search_callback, tool_callbacks=tool_callbacks, mcp_client_config=mcp_client_config,
            code_execution_config=code_execution_config, shell_config=shell_config, anymoe_config=anymoe_config,
            which_draft=which_draft, speculative_gamma=speculative_gamma, mtp_model=mtp_model,
            mtp_n_predict=mtp_n_predict, seed=seed, extra=plugin_options or {}))
        self._sessions = (MemorySessionStore(max_sessions, session_idle_ttl_s) if session_store is None
                          else open_session_store(session_store))
        self._files = FileStore()
        self._agent = AgentLoop(self._plugins.all_tools, self._plugins.execute_tool, self._sessions,
                                save_plugins=self._plugins.save_session_state,
                                load_plugins=self._plugins.restore_session_state,
                                limits=ToolLimits(tool_timeout_secs, tool_output_max_tokens),
                                request_tools=self._plugins.request_tools, files=self._files,
                                config=lambda: self._plugins.config)
        self._token = parse_token_source(token_source)
        self._engine_config = options.engine_config(EngineConfig(
            device=device, seed=seed if seed is not None else 0, request_timeout_s=request_timeout_secs))
        torch.set_num_threads(self._engine_config.resolved_threads())
        if seed is not None:
            torch.manual_seed(seed)
        self._chat_template, self._jinja_explicit = chat_template, jinja_explicit
        self._device, self._progress = device, progress
        self._lock = threading.RLock()
        loader = self._loader(which, self._engine_config, options)
        host = loader()
        self._models = ModelTable()
        self._models.add(host.model_id, loader, host=host, default=True)
        self._models_changed()
        log.info("loaded %s in %.2f s", host.model_id, host.load_time_s)

    @staticmethod
    def _make_plugins(plugins: Sequence[object], config: RunnerConfig) -> PluginHost:
        """Built-ins, entry points and the user's `plugins` (called first), configured once every
        plugin-served option given is declared by some plugin (else NotSupportedError)."""
        if isinstance(plugins, (str, bytes)) or not isinstance(plugins, (list, tuple)):
            raise TypeError(f"plugins must be a list of plugin objects (modules, classes or instances), "
                            f"got {type(plugins).__name__}")
        host = PluginHost.create(plugins)
        check_plugin_options(config, host.handled_options())
        host.configure(config)
        return host

    def _models_changed(self) -> None:
        """Give plugins' later hooks the current model list (`RunnerConfig.model_ids`, default first)."""
        config, default = self._plugins.config, self._models.default
        if config is not None:
            ids = sorted(self._models.ids(), key=lambda m: m != default)
            self._plugins.update_config(dataclasses.replace(config, model_id=default, model_ids=tuple(ids)))

    # ---- routing -------------------------------------------------------------------------------
    def _loader(self, which: Which, engine_config: EngineConfig, options: ModelOptions,
                model_id: str | None = None) -> Callable[[], ServedModel | EmbeddingHost]:
        """A closure that loads `which` afresh (for the first load and every reload).

        It captures the configuration only, never a host or the Runner, so unloading frees the model.
        Each call gets its own copy of `engine_config` (loading fills in `max_seq_len`).
        """
        token, device, progress, plugins = self._token, self._device, self._progress, self._plugins

        def load() -> ServedModel | EmbeddingHost:
            host = load_model(which, engine_config=dataclasses.replace(engine_config), token=token,
                              chat_template=options.chat_template, jinja_explicit=options.jinja_explicit,
                              device=device, progress=progress, weight_mode=options.weight_mode,
                              device_layers=options.device_layers, plugins=plugins)
            if model_id is not None:
                host.model_id = model_id
            return host

        return load

    def _lease(self, model_id: str | None, kind: str = "chat") -> Lease:
        """Acquire the model (reloading it if unloaded) and check it serves `kind` ("chat"/"embedding").

        The lease marks a request in flight: `unload_model` waits for it. Release it when the
        request is over (it is a context manager; streams release on exhaustion or close).
        """
        lease = self._models.acquire(model_id)
        host = lease.host
        if kind == "chat" and isinstance(host, EmbeddingHost):
            lease.release()
            raise ValueError(f"model {host.model_id!r} is an embedding model: use send_embedding_request")
        if kind == "embedding" and not isinstance(host, EmbeddingHost):
            lease.release()
            raise ValueError(f"model {host.model_id!r} is not an embedding model: load it with Which.Embedding")
        return lease

    @staticmethod
    def _watch(lease: Lease, ereq: EngineRequest) -> None:
        """Let an unload that times out end `ereq` cleanly: cancel it and post an error event."""
        backend = lease.host.backend

        def abort(reason: str) -> None:
            backend.cancel(ereq)
            ereq.outputs.put(RequestOutput(ereq.request_id, [], finished=True, error=reason))

        lease.on_abort(abort)

    def _entry(self, model_id: str | None) -> ServedModel | EmbeddingHost:
        """The model's live host (reloaded if needed), for quick lookups that need no lease."""
        lease = self._models.acquire(model_id)
        try:
            return lease.host
        finally:
            lease.release()

    def _host(self, model_id: str | None) -> ServedModel:
        return self.served_model(model_id)

    # ---- generation ----------------------------------------------------------------------------
    def send_chat_completion_request(
        self, request: ChatCompletionRequest, model_id: str | None = None
    ) -> ChatCompletionResponse | Iterator[ChatCompletionChunkResponse]:
        """Run a chat request; returns the response, or a chunk iterator when `request.stream`."""
        if not isinstance(request, ChatCompletionRequest):
            raise TypeError(f"request must be a ChatCompletionRequest, got {type(request).__name__}")
        with self._lease(model_id) as lease:
            host = lease.host
            tools = self._agent.tools_for(request)
            if tools is not None:
                def submit(ereq: EngineRequest) -> None:
                    host.backend.submit(ereq)
                    self._watch(lease, ereq)

                if request.stream:
                    return LeasedStream(self._agent.stream(request, host, tools, submit), lease.keep())
                return self._agent.run(request, host, tools, submit)
            ereq, plan = prepare_chat(request, host)
            host.backend.submit(ereq)
            self._watch(lease, ereq)
            if request.stream:
                return LeasedStream(ChatStream(ereq, host, request.logprobs, plan), lease.keep())
            return collect_chat(ereq, host, request.logprobs, plan)

    def send_chat_completion_request_to_model(
        self, request: ChatCompletionRequest, model_id: str
    ) -> ChatCompletionResponse | Iterator[ChatCompletionChunkResponse]:
        """`send_chat_completion_request` with a mandatory model id."""
        return self.send_chat_completion_request(request, model_id)

    def send_completion_request(self, request: CompletionRequest, model_id: str | None = None) -> CompletionResponse:
        """Run a raw-prompt completion (no chat template)."""
        if not isinstance(request, CompletionRequest):
            raise TypeError(f"request must be a CompletionRequest, got {type(request).__name__}")
        with self._lease(model_id) as lease:
            host = lease.host
            ereq = host.backend.submit(prepare_completion(request, host))
            self._watch(lease, ereq)
            return collect_completion(ereq, host, request)

    def send_completion_request_to_model(self, request: CompletionRequest, model_id: str) -> CompletionResponse:
        """`send_completion_request` with a mandatory model id."""
        return self.send_completion_request(request, model_id)

    def send_embedding_request(self, request: EmbeddingRequest, model_id: str | None = None) -> list[list[float]]:
        """Embed each input (input order preserved); needs a `Which.Embedding` model."""
        if not isinstance(request, EmbeddingRequest):
            raise TypeError(f"request must be an EmbeddingRequest, got {type(request).__name__}")
        with self._lease(model_id, "embedding") as lease:
            host = lease.host
            with host.lock:
                return host.model.embed(request.inputs(), truncate=request.truncate_sequence)

    # ---- asyncio ---------------------------------------------------------------------------------
    async def asend_chat_completion_request(
        self, request: ChatCompletionRequest, model_id: str | None = None
    ) -> ChatCompletionResponse | AsyncIterator[ChatCompletionChunkResponse]:
        """Async `send_chat_completion_request`: awaits the response, or returns an async chunk iterator."""
        result = await asyncio.to_thread(self.send_chat_completion_request, request, model_id)
        if isinstance(result, ChatCompletionResponse):
            return result
        return aiter_stream(result)

    async def asend_completion_request(self, request: CompletionRequest,
                                       model_id: str | None = None) -> CompletionResponse:
        """Async `send_completion_request`."""
        return await asyncio.to_thread(self.send_completion_request, request, model_id)

    # ---- tokenizer -----------------------------------------------------------------------------
    def tokenize_text(self, text: str, add_special_tokens: bool, enable_thinking: bool | None,
                      model_id: str | None = None) -> list[int]:
        """Raw tokenization, no chat template (`enable_thinking` is accepted and ignored, as mistralrs)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._host(model_id).tokenizer.encode(text, add_special_tokens=bool(add_special_tokens))

    def detokenize_text(self, tokens: list[int], skip_special_tokens: bool, model_id: str | None = None) -> str:
        """Decode token ids to text."""
        host = self._host(model_id)
        bad = [t for t in tokens if not isinstance(t, int) or not 0 <= t < host.tokenizer.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are not in the vocabulary (0..{host.tokenizer.vocab_size - 1})")
        return host.tokenizer.decode(list(tokens), skip_special_tokens=bool(skip_special_tokens))

    def max_sequence_length(self, model_id: str | None = None) -> int | None:
        """The model's context length in tokens."""
        return self._entry(model_id).max_seq_len

    # ---- ISQ: online calibration and re-quantization (agentkit.models.calibration) --------------------
    def begin_calibration(self, model_id: str | None = None) -> CalibrationStatus:
        """Start collecting activation statistics from live traffic (ISQ models only)."""
        return calibration.begin_calibration(self._host(model_id))

    def calibration_status(self, model_id: str | None = None) -> CalibrationStatus:
        """Layers tracked and token rows seen since `begin_calibration`."""
        return calibration.calibration_status(self._host(model_id))

    def apply_calibration(self, save_cimatrix: str | None = None, model_id: str | None = None) -> CalibrationStatus:
        """Requantize from the source weights with the collected imatrix, swapping layers live;
        returns the status before applying. `save_cimatrix` (a `.cimatrix` path) keeps the matrix."""
        return calibration.apply_calibration(self._host(model_id), save_cimatrix)

    def send_re_isq(self, dtype: str, model_id: str | None = None) -> None:
        """Requantize the live ISQ model to ISQ type `dtype` (e.g. "Q8_0"); later requests use it."""
        calibration.send_re_isq(self._host(model_id), dtype)

    # ---- model table ---------------------------------------------------------------------------
    # Every `model_id` argument is an id or an alias; None means the default model. Unknown ids
    # raise ModelNotFoundError (a ValueError) "Model X not found".
    def add_model(
        self,
        which: Which,
        model_id: str | None = None,
        alias: str | None = None,
        *,
        in_situ_quant: str | None = None,
        chat_template: str | None = None,
        jinja_explicit: str | None = None,
        max_seq_len: int | None = None,
        weights: str = "auto",
        max_seqs: int | None = None,
        no_kv_cache: bool | None = None,
        prefix_cache_n: int | None = None,
        memory_goal: str | float | None = None,
        pa_blk_size: int | None = None,
        pa_cache_type: Any = None,
        no_paged_attn: bool = False,
        paged_attn: bool = False,
        pa_gpu_mem: int | None = None,
        pa_gpu_mem_usage: float | None = None,
        pa_ctxt_len: int | None = None,
        num_threads: int | None = None,
        default: bool = False,
    ) -> str:
        """Load another model into this Runner (an agentkit extension); returns its id.

        `model_id` is the id it is listed and routed under (default: the model id / repo string
        of `which`, as for the first model); `alias` is an extra name for it. Engine options that
        are not given (`max_seqs`, prefix cache, KV budget, threads, `max_seq_len`, paged
        attention) default to the Runner's; template, ISQ and `weights` options are this model's
        own. Giving any KV budget knob (`pa_ctxt_len`, `pa_gpu_mem_usage`, `pa_gpu_mem`,
        `memory_goal`) replaces the Runner's whole KV budget. `default=True` makes it the
        default model. Each model runs its own engine thread, so requests to different models
        run concurrently. Raises ValueError if the id or alias is taken.
        """
        options = parse_model_options(
            which, weights=weights, in_situ_quant=in_situ_quant, chat_template=chat_template,
            jinja_explicit=jinja_explicit, max_seqs=max_seqs, no_kv_cache=no_kv_cache, prefix_cache_n=prefix_cache_n,
            max_seq_len=max_seq_len, num_threads=num_threads, pa_blk_size=pa_blk_size, pa_cache_type=pa_cache_type,
            paged_attn=paged_attn, no_paged_attn=no_paged_attn, pa_ctxt_len=pa_ctxt_len,
            pa_gpu_mem_usage=pa_gpu_mem_usage, pa_gpu_mem=pa_gpu_mem, memory_goal=memory_goal)
        name = model_name(which) if model_id is None else model_id
        self._models.check_new(name, alias)
        config = options.engine_config(self._engine_config)
        loader = self._loader(which, config, options, model_id=name)
        self._models.add(name, loader, alias=alias, default=default)
        self._models_changed()
        log.info("added model %s", name)
        return name

    def shutdown(self) -> None:
        """Stop every engine thread, then let plugins release their resources (`runner_shutdown`) and
        close the session store. The Runner is unusable afterwards. Idempotent."""
        models = getattr(self, "_models", None)
        if models is not None:
            models.shutdown_all()
        plugins = getattr(self, "_plugins", None)
        if plugins is not None:
            plugins.shutdown(self)
        sessions = getattr(self, "_sessions", None)
        if sessions is not None:
            sessions.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

