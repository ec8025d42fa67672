"""load_model: one loaded model (a `ServedModel` on a `LocalBackend`) built from a `Which`.

This is where the public `Which` variants meet the engine: resolve files offline, load weights
(safetensors or GGUF), build the native or transformers model runner, the tokenizer and the chat
template, and start the engine thread. Imports torch; the Runner imports it lazily.

Not covered: variants whose features have not landed (LoRA, X-LoRA, multimodal, diffusion,
speech); they raise `NotSupportedError` naming what is missing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from agentkit.api.which import Which
from agentkit.engine.chat_template import resolve_chat_template
from agentkit.engine.config import EngineConfig
from agentkit.engine.engine import Engine
from agentkit.engine.loading.device_map import (
    DeviceLayers,
    LayerPlacement,
    check_ordinals,
    ordinal_devices,
    plan_layers,
)
from agentkit.engine.loading.hub import read_json, resolve_model_dir
from agentkit.engine.loading.loader import LoadedModel, load_gguf, load_plain, resolve_dtype
from agentkit.engine.model_runner import KVOptions, ModelRunner, PrepareModel, build_runner
from agentkit.engine.speculative.protocol import DraftTarget
from agentkit.engine.tokenizer import Tokenizer, load_tokenizer
from agentkit.errors import ModelLoadError, NotSupportedError
from agentkit.models.local_backend import LocalBackend
from agentkit.models.served import ServedModel
from agentkit.plugin_host import PluginHost

log = logging.getLogger("agentkit")


ModelHost = ServedModel  # the former name (code-review §2.4)


@dataclass
class EmbeddingHost:
    """A loaded sentence-embedding model (no engine thread: requests run in the caller's thread)."""

    model_id: str
    model: Any
    load_time_s: float
    lock: Any = field(default_factory=threading.Lock)

    @property
    def max_seq_len(self) -> int:
        return self.model.max_seq_len

    def shutdown(self) -> None:
        pass


def pick_device(device: str | None) -> torch.device:
    """The requested device, else the first CUDA device when available, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def model_name(which: Which) -> str:
    """The id a model is listed under: the model id / repo string the user gave."""
    if which.kind == "GGUF":
        return which.quantized_model_id
    return which.model_id


def load_model(which: Which, *, engine_config: EngineConfig, token: str | None, chat_template: str | None,
               jinja_explicit: str | None, device: str | None = None, progress: bool = True,
               weight_mode: str = "auto", device_layers: tuple[DeviceLayers, ...] | None = None,
               plugins: PluginHost | None = None) -> ServedModel | EmbeddingHost:
    """Load `which` and start its engine; raises ValueError subclasses with actionable messages.

    `device_layers` (parsed `num_device_layers`) places the decoder layers (see
    `agentkit.engine.loading.device_map`). With `plugins`, `engine_prepare_model(model, plugins.config)`
    runs once on the loaded model, before quantization and KV-cache sizing (docs/plugins.md).

    A chat model is loaded on the thread that will serve it (see `Engine.serve`); this call
    blocks until loading finished and re-raises its error.
    """
    if which.kind == "Embedding":
        return load_unserved(which, engine_config=engine_config, token=token, chat_template=chat_template,
                             jinja_explicit=jinja_explicit, device=device, progress=progress,
                             weight_mode=weight_mode, device_layers=device_layers, plugins=plugins)
    box: dict[str, Any] = {}
    ready = threading.Event()

    def boot() -> None:
        try:
            torch.set_num_threads(engine_config.resolved_threads())
            box["host"] = load_unserved(which, engine_config=engine_config, token=token,
                                        chat_template=chat_template, jinja_explicit=jinja_explicit, device=device,
                                        progress=progress, weight_mode=weight_mode, device_layers=device_layers,
                                        plugins=plugins)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc
            return
        finally:
            ready.set()
        box["host"].engine.serve()

    threading.Thread(target=boot, name=f"agentkit-engine-{model_name(which)}", daemon=True).start()
    ready.wait()
    if "error" in box:
        raise box["error"]
    return box["host"]


def load_unserved(which: Which, *, engine_config: EngineConfig, token: str | None, chat_template: str | None,
                  jinja_explicit: str | None, device: str | None, progress: bool,
                  weight_mode: str, device_layers: tuple[DeviceLayers, ...] | None = None,
                  plugins: PluginHost | None = None) -> ServedModel | EmbeddingHost:
    """Load `which` on the calling thread without starting its engine thread.

    For callers that drive `engine.step()` themselves (step-level tests, benchmarks); a Runner
    uses `load_model`, which serves the engine on its own thread.
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    if device_layers is not None:
        check_ordinals(device_layers, ordinal_devices(dev))  # before reading any weight
    if which.kind == "Embedding":
        from agentkit.engine.embedding import EmbeddingModel

        emb = EmbeddingModel.load(which.model_id, dtype=which.dtype.name.lower(), device=dev,
                                  hf_cache_path=which.hf_cache_path, token=token,
                                  tokenizer_json=which.tokenizer_json, progress=progress)
        return EmbeddingHost(model_id=which.model_id, model=emb, load_time_s=time.perf_counter() - t0)
    dtype = resolve_dtype(which.dtype.name.lower(), dev)
    kind = which.kind
    gguf_path: str | None = None
    if kind == "Plain":
        loaded = load_plain(which.model_id, dtype=dtype, hf_cache_path=which.hf_cache_path, token=token,
                            progress=progress)
        tok_dir, tok_json = loaded.model_dir, which.tokenizer_json
    elif kind == "GGUF":
        loaded = load_gguf(which.quantized_model_id, which.quantized_filename, dtype=dtype,
                           hf_cache_path=which.hf_cache_path, token=token, progress=progress,
                           keep_quantized=weight_mode != "dense")
        gguf_path = loaded.gguf_path
        tok_json = which.tokenizer_json
        tok_dir = None
        if which.tok_model_id is not None:
            tok_dir = resolve_model_dir(which.tok_model_id, hf_cache_path=which.hf_cache_path, token=token)
    else:
        raise NotSupportedError(
            f"Which.{kind} is not supported by agentkit yet; use Which.Plain (safetensors) or Which.GGUF"
        )
    tokenizer = load_tokenizer(tok_dir, gguf_path=gguf_path if tok_dir is None else None, tokenizer_json=tok_json,
                               extra_eos_ids=_eos_ids(loaded))
    tok_config = loaded.tokenizer_config
    if tok_dir is not None and tok_dir != loaded.model_dir:
        tok_config = read_json(os.path.join(tok_dir, "tokenizer_config.json"), missing_ok=True, error=ModelLoadError)
    template = resolve_chat_template(
        jinja_explicit=jinja_explicit, chat_template=chat_template, model_dir=tok_dir or loaded.model_dir,
        gguf_template=loaded.gguf_chat_template, tokenizer_config=tok_config,
        special_tokens=tokenizer.special_tokens_map(),
    )
    placement = None
    if device_layers is not None:
        dev, placement = _placement(device_layers, loaded, dev)
    ctx = engine_config.max_seq_len or loaded.max_position_embeddings or 4096
    ec = engine_config
    kv = KVOptions(block_size=ec.block_size, cache_type=ec.cache_type, ctxt_len=ec.kv_ctxt_len,
                   mem_usage=ec.kv_mem_usage, mem_mb=ec.kv_mem_mb, memory_goal=ec.memory_goal)
    runner = build_runner(loaded.config, loaded.state_dict, dtype, dev, ctx, kv,
                          prefer_native=ec.paged_attn is not False, weight_mode=weight_mode,
                          prepare=_prepare_hook(plugins, tokenizer, template), placement=placement)
    loaded.state_dict.clear()  # the runner holds its own (possibly fused) tensors now
    ctx = cap_context(ctx, runner.num_blocks * runner.block_size, explicit=engine_config.max_seq_len is not None)
    isq = None
    if weight_mode in ("int4", "int8") and runner.kind == "native":
        isq = _calibrator(which, loaded, runner, weight_mode)
    elif weight_mode in ("int4", "int8"):
        warnings.warn(f"in_situ_quant has no effect on {loaded.arch}: it runs on the transformers fallback, "
                      "whose weights stay dense", RuntimeWarning, stacklevel=2)
    engine_config.max_seq_len = ctx
    name = model_name(which)
    engine = Engine(runner, tokenizer, engine_config, eos_token_ids=tokenizer.eos_token_ids | _eos_ids(loaded),
                    name=name, start=False)
    if plugins is not None and plugins.config is not None:
        target = DraftTarget(model_id=name, runner=runner, tokenizer=tokenizer, vocab_size=runner.vocab_size,
                             max_seq_len=ctx, max_seqs=engine_config.max_seqs, device=dev,
                             load_model=_draft_loader(engine_config, token, dev, progress))
        proposer = plugins.draft_proposer(target, plugins.config)
        if proposer is not None and getattr(proposer, "max_draft", 1) != 0:
            engine.enable_speculation(proposer)
            anymoe = getattr(getattr(runner, "model", None), "anymoe", None)
            if anymoe is not None:  # the calibration steps served no request
                anymoe.reset_stats()
    return ServedModel(model_id=name, backend=LocalBackend(engine, runner.kind), tokenizer=tokenizer,
                       template=template, generation_config=loaded.generation_config, max_seq_len=ctx,
                       arch=loaded.arch, load_time_s=time.perf_counter() - t0, isq=isq)


def _draft_loader(target: EngineConfig, token: str | None, dev: torch.device,
                  progress: bool) -> Callable[[Which], tuple[ModelRunner, Tokenizer]]:
    """`DraftTarget.load_model`: a draft model on the target's device with a KV pool for two of the
    target's contexts (no plugins, no engine thread)."""
    def load(which: Which) -> tuple[ModelRunner, Tokenizer]:
        if not isinstance(which, Which):
            raise TypeError(f"which_draft must be a Which variant, got {type(which).__name__}")
        ctx = target.max_seq_len or 4096
        config = EngineConfig(max_seq_len=ctx, kv_ctxt_len=2 * ctx, num_threads=target.num_threads)
        host = load_unserved(which, engine_config=config, token=token, chat_template=None, jinja_explicit=None,
                     device=str(dev), progress=progress, weight_mode="auto")
        if not isinstance(host, ServedModel):
            raise TypeError(f"which_draft must be a text-generation model, got Which.{which.kind}")
        engine = host.backend.engine
        engine.shutdown()
        return engine.runner, host.tokenizer
    return load


def _calibrator(which: Which, loaded: LoadedModel, runner: Any, weight_mode: str) -> Any:
    """Online calibration / re-ISQ support for an ISQ model, reading the source weights on demand."""
    from agentkit.engine.calibration import GgufSource, OnlineCalibrator, SafetensorsSource

    if loaded.gguf_path is not None:
        names = which.quantized_filename
        names = [names] if isinstance(names, str) else list(names)
        source: Any = GgufSource([os.path.join(loaded.model_dir or "", n) for n in names])
    else:
        source = SafetensorsSource(loaded.model_dir)
    return OnlineCalibrator(runner.model, weight_mode, source)


def _placement(entries: tuple[DeviceLayers, ...], loaded: LoadedModel,
               main: torch.device) -> tuple[torch.device, LayerPlacement | None]:
    """The model's main device and, when `num_device_layers` spreads the decoder layers over several
    devices, their placement (embeddings and LM head stay on `main`, as in mistral.rs)."""
    cfg = loaded.config.get_text_config() if hasattr(loaded.config, "get_text_config") else loaded.config
    plan = plan_layers(entries, int(cfg.num_hidden_layers), ordinal_devices(main))
    if plan.single_device is not None:
        return torch.device(plan.single_device), None
    return main, plan if plan.stages else None


def _prepare_hook(plugins: PluginHost | None, tokenizer: Any = None, template: Any = None) -> PrepareModel | None:
    """`engine_prepare_model` bound to the Runner's config and a prompt encoder, for the engine's load path."""
    if plugins is None or plugins.config is None:
        return None
    config = plugins.config

    def encode_prompt(text: str) -> list[int]:
        if template is None:
            return tokenizer.encode(text, add_special_tokens=True)
        rendered = template.render([{"role": "user", "content": text}], add_generation_prompt=True)
        return tokenizer.encode(rendered, add_special_tokens=False)

    return lambda model: plugins.prepare_model(model, config, encode_prompt if tokenizer is not None else None)


def cap_context(ctx: int, pool_tokens: int, explicit: bool) -> int:
    """The context a request may use: the model's, or less when the KV pool holds fewer tokens.

    One sequence must always fit the pool alone, or it would be cut short without an error. An
    explicit `max_seq_len` larger than the pool is refused; a model context larger than the pool
    is lowered to the pool's size with a warning (prompts beyond it are refused like any prompt
    longer than the context, and generation stops there with finish_reason "length").
    """
    if pool_tokens >= ctx:
        return ctx
    knobs = "pa_ctxt_len, pa_gpu_mem_usage, pa_gpu_mem or memory_goal"
    if explicit:
        raise ValueError(f"max_seq_len={ctx} is larger than the KV cache ({pool_tokens} tokens): raise the KV "
                         f"budget ({knobs}) or lower max_seq_len")
    log.warning("the KV cache holds %d tokens, less than the model's context of %d: requests are limited to "
                "%d tokens of prompt + completion; raise %s for more, or set max_seq_len to make this explicit",
                pool_tokens, ctx, pool_tokens, knobs)
    return pool_tokens


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    for src in (loaded.generation_config.get("eos_token_id"), getattr(loaded.config, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return ids

