"""Runner: the mistralrs-compatible façade over one or more loaded models.

Construction loads the model synchronously (with a progress bar) and starts its engine thread.
Every method may be called from any thread at once: requests are tokenized in the caller's
thread and continuously batched by the engine. Errors follow mistralrs: `ValueError` for bad
requests and unknown models, `TypeError` for wrong argument types.

Not covered yet: the server-side tool loop, sessions, web search, MCP, code execution, AnyMoE,
speculative decoding, quantization (their arguments raise `NotSupportedError` until they land).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import torch

from agentkit.chat import ChatStream, collect_chat, collect_completion, prepare_chat, prepare_completion
from agentkit.engine.config import EngineConfig
from agentkit.engine.hub import parse_token_source
from agentkit.errors import ModelNotFoundError, NotSupportedError
from agentkit.isq import isq_mode
from agentkit.model_host import EmbeddingHost, ModelHost, load_model
from agentkit.requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from agentkit.responses import ChatCompletionChunkResponse, ChatCompletionResponse, CompletionResponse
from agentkit.which import Which

log = logging.getLogger("agentkit")

_UNSUPPORTED = {
    "mtp_model": "speculative decoding",
    "anymoe_config": "AnyMoE",
    "which_draft": "draft-model speculative decoding",
    "search_callback": "web search",
    "mcp_client_config": "MCP tools",
    "code_execution_config": "code execution",
    "shell_config": "the shell tool",
    "tool_callbacks": "server-side tool callbacks",
    "num_device_layers": "manual device mapping",
}


class Runner:
    """Load a model and serve chat/completion requests (the mistralrs `Runner` API)."""

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
        device: str | None = None,
        weights: str = "auto",
        progress: bool = True,
    ) -> None:
        if not isinstance(which, Which):
            raise TypeError(f"which must be a Which variant (e.g. Which.GGUF(...)), got {type(which).__name__}")
        given = dict(mtp_model=mtp_model, anymoe_config=anymoe_config,
                     which_draft=which_draft, search_callback=search_callback, mcp_client_config=mcp_client_config,
                     code_execution_config=code_execution_config, shell_config=shell_config,
                     tool_callbacks=tool_callbacks, num_device_layers=num_device_layers)
        for name, value in given.items():
            if value is not None:
                raise NotSupportedError(f"{name}= ({_UNSUPPORTED[name]}) is not supported by agentkit yet")
        if enable_search:
            raise NotSupportedError("enable_search= (web search) is not supported by agentkit yet")
        self._token = parse_token_source(token_source)
        if paged_attn and no_paged_attn:
            raise ValueError("paged_attn and no_paged_attn are mutually exclusive")
        self._engine_config = EngineConfig(
            max_seqs=max_seqs, no_kv_cache=no_kv_cache, prefix_cache_n=prefix_cache_n, max_seq_len=max_seq_len,
            num_threads=num_threads, device=device, seed=seed if seed is not None else 0,
            block_size=32 if pa_blk_size is None else pa_blk_size, cache_type=_cache_type(pa_cache_type),
            kv_ctxt_len=pa_ctxt_len, kv_mem_usage=pa_gpu_mem_usage, kv_mem_mb=pa_gpu_mem, memory_goal=memory_goal,
            paged_attn=False if no_paged_attn else (True if paged_attn else None),
        )
        torch.set_num_threads(self._engine_config.resolved_threads())
        if seed is not None:
            torch.manual_seed(seed)
        self._chat_template, self._jinja_explicit = chat_template, jinja_explicit
        self._device, self._progress = device, progress
        self._lock = threading.RLock()
        self._models: dict[str, ModelHost] = {}
        if weights not in ("auto", "dense"):
            raise ValueError(f"weights must be 'auto' or 'dense', got {weights!r}")
        mode = isq_mode(in_situ_quant) if in_situ_quant is not None else weights
        host = load_model(which, engine_config=self._engine_config, token=self._token, chat_template=chat_template,
                          jinja_explicit=jinja_explicit, device=device, progress=progress, weight_mode=mode)
        self._models[host.model_id] = host
        self._default: str | None = host.model_id
        log.info("loaded %s in %.2f s", host.model_id, host.load_time_s)

    # ---- routing -------------------------------------------------------------------------------
    def _entry(self, model_id: str | None) -> ModelHost | EmbeddingHost:
        with self._lock:
            key = self._default if model_id is None else model_id
            if key is None or key not in self._models:
                raise ModelNotFoundError(f"Model {model_id if model_id is not None else '(default)'} not found")
            return self._models[key]

    def _host(self, model_id: str | None) -> ModelHost:
        host = self._entry(model_id)
        if isinstance(host, EmbeddingHost):
            raise ValueError(f"model {host.model_id!r} is an embedding model: use send_embedding_request")
        return host

    # ---- generation ----------------------------------------------------------------------------
    def send_chat_completion_request(
        self, request: ChatCompletionRequest, model_id: str | None = None
    ) -> ChatCompletionResponse | Iterator[ChatCompletionChunkResponse]:
        """Run a chat request; returns the response, or a chunk iterator when `request.stream`."""
        if not isinstance(request, ChatCompletionRequest):
            raise TypeError(f"request must be a ChatCompletionRequest, got {type(request).__name__}")
        host = self._host(model_id)
        ereq = host.engine.submit(prepare_chat(request, host))
        if request.stream:
            return ChatStream(ereq, host, request.logprobs)
        return collect_chat(ereq, host, request.logprobs)

    def send_chat_completion_request_to_model(
        self, request: ChatCompletionRequest, model_id: str
    ) -> ChatCompletionResponse | Iterator[ChatCompletionChunkResponse]:
        """`send_chat_completion_request` with a mandatory model id."""
        return self.send_chat_completion_request(request, model_id)

    def send_completion_request(self, request: CompletionRequest, model_id: str | None = None) -> CompletionResponse:
        """Run a raw-prompt completion (no chat template)."""
        if not isinstance(request, CompletionRequest):
            raise TypeError(f"request must be a CompletionRequest, got {type(request).__name__}")
        host = self._host(model_id)
        ereq = host.engine.submit(prepare_completion(request, host))
        return collect_completion(ereq, host, request)

    def send_completion_request_to_model(self, request: CompletionRequest, model_id: str) -> CompletionResponse:
        """`send_completion_request` with a mandatory model id."""
        return self.send_completion_request(request, model_id)

    def send_embedding_request(self, request: EmbeddingRequest, model_id: str | None = None) -> list[list[float]]:
        """Embed each input (input order preserved); needs a `Which.Embedding` model."""
        if not isinstance(request, EmbeddingRequest):
            raise TypeError(f"request must be an EmbeddingRequest, got {type(request).__name__}")
        host = self._entry(model_id)
        if not isinstance(host, EmbeddingHost):
            raise ValueError(f"model {host.model_id!r} is not an embedding model: load it with Which.Embedding")
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
        return _aiter_stream(result)

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

    # ---- model table ---------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Ids of the loaded models."""
        with self._lock:
            return list(self._models)

    def get_default_model_id(self) -> str | None:
        """The model used when a request names none."""
        with self._lock:
            return self._default

    def set_default_model_id(self, model_id: str) -> None:
        """Route requests without a model id to `model_id` (must be loaded)."""
        with self._lock:
            if model_id not in self._models:
                raise ModelNotFoundError(f"Model {model_id} not found")
            self._default = model_id

    def is_model_loaded(self, model_id: str) -> bool:
        """Whether `model_id` is loaded (unknown ids give False)."""
        with self._lock:
            return model_id in self._models

    def shutdown(self) -> None:
        """Stop every engine thread. The Runner is unusable afterwards. Idempotent."""
        with self._lock:
            for host in self._models.values():
                host.shutdown()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass


async def _aiter_stream(stream: Iterator[ChatCompletionChunkResponse]) -> AsyncIterator[ChatCompletionChunkResponse]:
    """Drain a sync chunk stream without blocking the event loop; closing the iterator cancels."""
    sentinel = object()
    try:
        while True:
            chunk = await asyncio.to_thread(next, stream, sentinel)
            if chunk is sentinel:
                return
            yield chunk
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _cache_type(value: Any) -> str:
    """PagedCacheType (or its name) -> the engine's cache type string."""
    from agentkit.enums import PagedCacheType

    if value is None:
        return "auto"
    if isinstance(value, PagedCacheType):
        return "f8e4m3" if value is PagedCacheType.F8E4M3 else "auto"
    if isinstance(value, str) and value.lower() in ("auto", "f8e4m3"):
        return value.lower()
    raise TypeError(f"pa_cache_type must be a PagedCacheType (Auto or F8E4M3), got {value!r}")
