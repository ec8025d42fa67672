"""The built-in AnyMoE plugin: `Runner(anymoe_config=AnyMoeConfig(...))` (runner-api.md §3.6).

At model load (`engine_prepare_model`, after the other plugins: `trylast`) it checks the config
against the model, replaces the `mlp` of each selected decoder layer with an `AnyMoeMLP` (expert 0
= the base MLP, then one expert per `model_ids` entry), gives the KV pool the running-sum side
channel that sequence routing needs, then sets the gates: loaded from
`{gate_model_id}/gate.safetensors` (`training=False`), built from hidden states
(`gate_init="hidden"`), trained (`training=True`, after `gate_init` when both are given), saved
to `gate_model_id` when training, with the losses in `loss_csv_path`. The model then serves
requests through the normal engine: the core swaps the linears for their serving kernels after
the hook (packed GGUF blocks stay packed, `in_situ_quant` applies to the base and FineTuned
experts; gates and LoRA factors are not `Linear`s and stay in full precision). `model.anymoe`
holds the `AnyMoeState` the Runner's statistics methods use.

Every bad config raises at Runner start: in `runner_configure` what needs no model (dataset file,
gate file), in `engine_prepare_model` the rest (architecture, hidden size, layers, experts) as
`ConfigError` / `NotSupportedError` (ValueErrors) naming the field and the fix.

Scope: `AnyMoePlugin` (the hooks) and `build_anymoe` (the load-time steps).

The config applies to every model the Runner loads (mistral.rs's Runner has one), reloads included
(gates are trained or loaded again).

Non-goals: the transformers fallback (AnyMoE needs the native Llama-family engine), dynamic LoRA
(incompatible, as in mistral.rs), images in the dataset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from agentkit.errors import ConfigError, NotSupportedError
from agentkit.hookspecs import hookimpl

__all__ = ["AnyMoePlugin", "build_anymoe"]


def _check_static(cfg: Any) -> None:
    """What can be checked before any model loads."""
    from agentkit.api.model_options import AnyMoeConfig

    if not isinstance(cfg, AnyMoeConfig):
        raise TypeError(f"anymoe_config must be an AnyMoeConfig, got {type(cfg).__name__}")
    if not cfg.training and cfg.gate_model_id is None and cfg.gate_init is None:
        raise ConfigError("AnyMoeConfig: training=False needs pretrained gates (gate_model_id=<dir with "
                          "gate.safetensors>) or gate_init='hidden'")
    if not cfg.training and cfg.gate_model_id is not None and cfg.gate_init is not None:
        raise ConfigError("AnyMoeConfig: training=False with gate_model_id loads the saved gates; drop gate_init "
                          "(or set training=True to start training from it)")
    if (cfg.training or cfg.gate_init is not None) and not os.path.isfile(cfg.dataset_json):
        raise ConfigError(f"AnyMoeConfig.dataset_json: no such file {cfg.dataset_json!r}; gate training and "
                          "gate_init='hidden' read labelled prompts from it (JSON {\"rows\": [...]} or CSV)")
    if not cfg.training and cfg.gate_model_id is not None:
        path = os.path.join(cfg.gate_model_id, "gate.safetensors")
        if not os.path.isfile(path):
            raise ConfigError(f"AnyMoeConfig.gate_model_id: no gate.safetensors in {cfg.gate_model_id!r}; "
                              "train with training=True and gate_model_id=<dir> to write it")


def _layers(cfg: Any, n_layers: int) -> list[int]:
    layers = sorted(set(cfg.layers)) if cfg.layers else list(range(n_layers))
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ConfigError(f"AnyMoeConfig.layers: {bad} are not layers of this model, which has {n_layers} "
                          f"decoder layers (0..{n_layers - 1}); leave layers=[] for all")
    return layers


def build_anymoe(model: Any, cfg: Any, encode: Callable[[str], list[int]] | None, seed: int = 0) -> Any:
    """Turn `model` (a native `LlamaModel`, not yet quantized) into an AnyMoE model; return its state."""
    import torch

    from agentkit.api.model_options import AnyMoeExpertType_FineTuned, AnyMoeExpertType_LoraAdapter
    from agentkit.engine.models.llama import LlamaModel
    from agentkit.plugins.anymoe import experts as ex
    from agentkit.plugins.anymoe.dataset import read_dataset
    from agentkit.plugins.anymoe.gates import load_gates, save_gates
    from agentkit.plugins.anymoe.layer import AnyMoeMLP, MoeGate
    from agentkit.plugins.anymoe.routing import StepContext
    from agentkit.plugins.anymoe.state import AnyMoeState
    from agentkit.plugins.anymoe.training import fit_gates, write_loss_csv

    if not isinstance(model, LlamaModel):
        raise NotSupportedError(f"AnyMoE needs the native engine (Llama, Mistral, Qwen2, Qwen3 models with paged "
                                f"attention); this model is served by {type(model).__name__}")
    if model.stages is not None:
        raise NotSupportedError("AnyMoE runs a model on one device; num_device_layers spreads its layers over "
                                "several: give all layers to one device (e.g. [\"500\"]) or pass device=")
    _check_static(cfg)
    hidden = int(model.config.hidden_size)
    if cfg.hidden_size != hidden:
        raise ConfigError(f"AnyMoeConfig.hidden_size={cfg.hidden_size} does not match the model's hidden size "
                          f"{hidden} (config.json hidden_size); set hidden_size={hidden}")
    layers = _layers(cfg, len(model.layers))
    n_experts = 1 + len(cfg.model_ids)
    rows = read_dataset(cfg.dataset_json, n_experts) if cfg.training or cfg.gate_init else []
    inter = int(model.config.intermediate_size)
    lora = finetuned = None
    if isinstance(cfg.expert_type, AnyMoeExpertType_LoraAdapter):
        lora = ex.load_lora_experts(cfg.model_ids, cfg.expert_type, cfg.prefix, cfg.mlp, layers, hidden, inter,
                                    model.dtype, model.device)
    elif isinstance(cfg.expert_type, AnyMoeExpertType_FineTuned):
        finetuned = ex.load_finetuned_experts(cfg.model_ids, cfg.prefix, cfg.mlp, layers, model.config, model.dtype,
                                              keep_quantized=model.weight_mode != "dense")
    else:
        raise ConfigError(f"AnyMoeConfig.expert_type must be AnyMoeExpertType.FineTuned() or .LoraAdapter(...), "
                          f"got {cfg.expert_type!r}")

    ctx = StepContext()
    gen = torch.Generator().manual_seed(seed)
    moes = []
    for index, li in enumerate(layers):
        decoder = model.layers[li]
        gate = MoeGate(hidden, n_experts, model.device, gen)
        moe = AnyMoeMLP(decoder.mlp, li, index, gate, ctx, routing=cfg.routing, top_k=cfg.top_k,
                        lora=[e[li] for e in lora] if lora else None,
                        finetuned=[e[li] for e in finetuned] if finetuned else None)
        decoder.mlp = moe
        moes.append(moe)
    # the first MoE layer sees each step first; the others read the same StepContext
    model.layers[layers[0]].register_forward_pre_hook(lambda _mod, args: ctx.capture(args[3], args[4]))
    if cfg.routing == "sequence":
        model.kv_spec.aux_layers, model.kv_spec.aux_width = len(moes), n_experts
    state = AnyMoeState(model, moes, ctx, encode, cfg.routing)

    if not cfg.training and cfg.gate_model_id is not None:
        load_gates(moes, cfg.gate_model_id)
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        state.training_losses = fit_gates(model, ctx, moes, encode, rows, cfg, seed=seed)
        state.training_seconds = time.perf_counter() - t0
        state.training_cpu_seconds = time.process_time() - c0
        if cfg.training and cfg.gate_model_id is not None:
            save_gates(moes, cfg.gate_model_id)
        if cfg.training and cfg.loss_csv_path is not None:
            write_loss_csv(cfg.loss_csv_path, state.training_losses)
    model.anymoe = state
    return state


class AnyMoePlugin:
    """Serves `Runner(anymoe_config=...)`; one instance per Runner."""

    @hookimpl
    def runner_options(self) -> list[str]:
        return ["anymoe_config"]

    @hookimpl
    def runner_configure(self, config: Any) -> None:
        if config.anymoe_config is not None:
            _check_static(config.anymoe_config)

    @hookimpl(trylast=True)
    def engine_prepare_model(self, model: Any, config: Any, encode_prompt: Callable[[str], list[int]] | None) -> None:
        if config.anymoe_config is not None:
            build_anymoe(model, config.anymoe_config, encode_prompt, seed=config.seed or 0)
