"""AnyMoE expert weights: PEFT LoRA deltas (`LoraAdapter`) or the MLPs of fine-tuned models (`FineTuned`).

Scope:
- `load_lora_experts`: one LoRA adapter per `model_ids` entry (a local directory or a hub id in
  the HF cache holding `adapter_model.safetensors` + `adapter_config.json`), read as
  `A [rank, in]` / `B [out, rank]` per layer and target module among gate_proj/up_proj/down_proj
  (keys `...{prefix}.{layer}.{mlp}.{module}.lora_A.weight`, PEFT's naming). The delta is
  `B @ A * alpha / rank` with `rank`/`alpha` from `AnyMoeExpertType.LoraAdapter`, as mistral.rs.
- `load_finetuned_experts`: the `{prefix}.{layer}.{mlp}.{gate,up,down}_proj.weight` tensors of a
  same-architecture model (safetensors directory, a GGUF file or a directory with one GGUF; GGUF
  4/8-bit blocks stay packed), as `LoadedLinear`s.
Every mismatch (other architecture or sizes, wrong rank, missing tensors, bad target module)
raises `ConfigError` naming the expert, the tensor and the fix.

Non-goals: merging deltas into weights (the MoE layer applies them low-rank at run time),
pickle checkpoints (never loaded), downloading.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from agentkit.engine.loading.hub import resolve_model_dir
from agentkit.engine.loading.loader import load_gguf, load_plain
from agentkit.engine.models.linear import LoadedLinear
from agentkit.errors import ConfigError

__all__ = ["LORA_MODULES", "FineTunedMLP", "LoraDelta", "load_finetuned_experts", "load_lora_experts"]

LORA_MODULES = ("gate_proj", "up_proj", "down_proj")


@dataclass
class LoraDelta:
    """One expert's LoRA factors for one layer: module -> (A `[r, in]`, B `[out, r]`), and the scale."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float


@dataclass
class FineTunedMLP:
    """One expert's MLP weights for one layer, as the loader gave them (dense or packed)."""

    gate_up: LoadedLinear
    down: LoadedLinear


def _local_dir(model_id: str, what: str) -> str:
    try:
        return resolve_model_dir(model_id)
    except ValueError as exc:
        raise ConfigError(f"AnyMoE {what} {model_id!r} is not available locally: {exc}") from exc


def load_lora_experts(model_ids: list[str], expert_type: Any, prefix: str, mlp: str, layers: list[int],
                      hidden: int, intermediate: int, dtype: torch.dtype, device: torch.device
                      ) -> list[dict[int, LoraDelta]]:
    """Per expert (in `model_ids` order), per selected layer, its LoRA factors."""
    from safetensors import safe_open

    targets = list(expert_type.target_modules)
    bad = [t for t in targets if t not in LORA_MODULES]
    if bad or not targets:
        raise ConfigError(f"AnyMoeExpertType.LoraAdapter target_modules must be a non-empty subset of "
                          f"{list(LORA_MODULES)} (the MLP projections), got {targets!r}")
    rank, scale = int(expert_type.rank), float(expert_type.alpha) / int(expert_type.rank)
    pattern = re.compile(rf"(?:^|\.){re.escape(prefix)}\.(\d+)\.{re.escape(mlp)}\."
                         rf"({'|'.join(LORA_MODULES)})\.lora_([AB])(?:\.[^.]+)?\.weight$")
    shapes = {"gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate),
              "down_proj": (intermediate, hidden)}
    experts = []
    for model_id in model_ids:
        directory = _local_dir(model_id, "LoRA adapter")
        path = os.path.join(directory, "adapter_model.safetensors")
        if not os.path.isfile(path):
            pickled = glob.glob(os.path.join(directory, "adapter_model.bin"))
            hint = " (it has adapter_model.bin: pickle weights are never loaded; convert to safetensors)" if pickled else ""
            raise ConfigError(f"AnyMoE LoRA adapter {model_id!r}: no adapter_model.safetensors in {directory}{hint}")
        if not os.path.isfile(os.path.join(directory, "adapter_config.json")):
            raise ConfigError(f"AnyMoE LoRA adapter {model_id!r}: no adapter_config.json in {directory} "
                              "(a PEFT adapter directory has both files)")
        with open(os.path.join(directory, "adapter_config.json"), encoding="utf-8") as f:
            peft_type = json.load(f).get("peft_type", "LORA")
        if str(peft_type).upper() != "LORA":
            raise ConfigError(f"AnyMoE LoRA adapter {model_id!r} is a {peft_type} adapter, not LORA")
        found: dict[tuple[int, str, str], torch.Tensor] = {}
        with safe_open(path, framework="pt", device="cpu") as handle:
            for key in handle.keys():
                m = pattern.search(key)
                if m and int(m.group(1)) in layers and m.group(2) in targets:
                    found[(int(m.group(1)), m.group(2), m.group(3))] = handle.get_tensor(key)
        if not found:
            raise ConfigError(f"AnyMoE LoRA adapter {model_id!r} has no LoRA weights named "
                              f"'{prefix}.<layer>.{mlp}.<{'|'.join(targets)}>.lora_A.weight' for layers {layers}: "
                              "check `prefix`, `mlp`, `layers` and `target_modules`")
        per_layer: dict[int, LoraDelta] = {}
        for layer in layers:
            factors = {}
            for module in targets:
                a, b = found.get((layer, module, "A")), found.get((layer, module, "B"))
                if a is None and b is None:
                    continue  # the adapter leaves this module of this layer alone: a zero delta
                if a is None or b is None:
                    raise ConfigError(f"AnyMoE LoRA adapter {model_id!r}: layer {layer} {module} has only "
                                      f"lora_{'A' if b is None else 'B'}")
                fan_in, fan_out = shapes[module]
                if tuple(a.shape) != (rank, fan_in) or tuple(b.shape) != (fan_out, rank):
                    raise ConfigError(
                        f"AnyMoE LoRA adapter {model_id!r}: layer {layer} {module} has lora_A {tuple(a.shape)} and "
                        f"lora_B {tuple(b.shape)}, but this model with rank={rank} needs {(rank, fan_in)} and "
                        f"{(fan_out, rank)}: the adapter is for another architecture or another rank")
                factors[module] = (a.to(device, dtype), b.to(device, dtype))
            per_layer[layer] = LoraDelta(factors, scale)
        experts.append(per_layer)
    return experts


def _load_expert_model(model_id: str, dtype: torch.dtype, keep_quantized: bool) -> Any:
    if model_id.lower().endswith(".gguf") and os.path.isfile(model_id):
        return load_gguf(os.path.dirname(os.path.abspath(model_id)), os.path.basename(model_id), dtype=dtype,
                         progress=False, keep_quantized=keep_quantized)
    directory = _local_dir(model_id, "expert model")
    if os.path.isfile(os.path.join(directory, "config.json")):
        return load_plain(directory, dtype=dtype, progress=False)
    ggufs = sorted(glob.glob(os.path.join(directory, "*.gguf")))
    if len(ggufs) != 1:
        raise ConfigError(f"AnyMoE expert {model_id!r}: {directory} has no config.json + safetensors and "
                          f"{len(ggufs)} GGUF files; give a safetensors model directory or the path of one .gguf")
    return load_gguf(directory, os.path.basename(ggufs[0]), dtype=dtype, progress=False,
                     keep_quantized=keep_quantized)


def _arch(config: Any) -> dict[str, Any]:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {k: getattr(cfg, k, None) for k in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers")}


def load_finetuned_experts(model_ids: list[str], prefix: str, mlp: str, layers: list[int], base_config: Any,
                           dtype: torch.dtype, keep_quantized: bool) -> list[dict[int, FineTunedMLP]]:
    """Per expert, per selected layer, the MLP weights of a fine-tuned model of the base's architecture."""
    want = _arch(base_config)
    experts = []
    for model_id in model_ids:
        loaded = _load_expert_model(model_id, dtype, keep_quantized)
        got = _arch(loaded.config)
        diff = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
        if diff:
            parts = ", ".join(f"{k} {g!r} (base {w!r})" for k, (w, g) in diff.items())
            raise ConfigError(f"AnyMoE expert {model_id!r} is of another architecture than the base model: {parts}; "
                              "FineTuned experts must be fine-tunes of the base model")
        sd = loaded.state_dict
        per_layer = {}
        for layer in layers:
            names = [f"{prefix}.{layer}.{mlp}.{m}.weight" for m in LORA_MODULES]
            missing = [n for n in names if n not in sd]
            if missing:
                raise ConfigError(f"AnyMoE expert {model_id!r} has no tensor {missing[0]!r}: check `prefix` and `mlp` "
                                  "(e.g. prefix='model.layers', mlp='mlp' for model.layers.0.mlp.down_proj.weight)")
            per_layer[layer] = FineTunedMLP(LoadedLinear([sd[names[0]], sd[names[1]]], None, dtype),
                                            LoadedLinear([sd[names[2]]], None, dtype))
        experts.append(per_layer)
    return experts
