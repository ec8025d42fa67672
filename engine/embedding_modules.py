"""The sentence-transformers modules of an embedding model directory: pooling, dense layers, checks.

Scope: `modules.json` entry kinds, the Pooling config (`PoolingConfig`, the pooling modes and
their sentence-transformers order), Dense layers read from safetensors (`Dense`), `pool` over a
masked batch, and the refusal of pickle-only directories (`require_safetensors`).

Non-goals: the encoder and batching (`agentkit.engine.embedding.EmbeddingModel`), modules other
than Transformer, Pooling, Dense and Normalize.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agentkit.engine.loading.hub import read_json
from agentkit.engine.loading.loader import pickle_weight_files
from agentkit.errors import ModelLoadError, NotSupportedError

__all__ = ["DEFAULT_BATCH_SIZE", "OFFSET_POSITIONS", "Dense", "PoolingConfig", "load_dense", "module_kind",
           "parse_pooling", "pool", "require_safetensors"]

# sentence-transformers concatenates the enabled pooling outputs in this order.
_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
_POOLING_ALIASES = {
    "cls": "cls_token",
    "max": "max_tokens",
    "mean": "mean_tokens",
    "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "weightedmean": "weightedmean_tokens",
    "lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# Dense activations by class name (never import a class path taken from a file).
_ACTIVATIONS = {
    "Identity": lambda x: x,
    "Tanh": torch.tanh,
    "ReLU": torch.relu,
    "GELU": torch.nn.functional.gelu,
    "Sigmoid": torch.sigmoid,
    "SiLU": torch.nn.functional.silu,
}
_PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.bin", "*.pt", "*.pth", "*.ckpt")
# Models whose position ids start after the padding index (max_position_embeddings - 2 usable).
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "xlm-roberta-xl"}
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class PoolingConfig:
    """Which token poolings to apply; several enabled modes are concatenated (sentence-transformers order)."""

    modes: tuple[str, ...] = ("mean_tokens",)


@dataclass
class Dense:
    weight: torch.Tensor  # (out, in), float32
    bias: torch.Tensor | None
    activation: Any


def _safetensors_in(directory: str) -> list[str]:
    return sorted(glob.glob(os.path.join(directory, "*.safetensors")))


def require_safetensors(directory: str) -> None:
    """Raise ModelLoadError when `directory` has no safetensors weights (naming pickle files found)."""
    if _safetensors_in(directory) or os.path.isfile(os.path.join(directory, "model.safetensors.index.json")):
        return
    pickled = pickle_weight_files(directory)
    if pickled:
        raise ModelLoadError(
            f"{directory} holds only pickle checkpoints ({', '.join(pickled[:3])}); agentkit loads embedding"
            " weights only from *.safetensors (never torch.load). Convert once where you trust the file:"
            " `AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`."
        )
    raise ModelLoadError(f"{directory} contains no *.safetensors weights")


def module_kind(entry: Any, modules_path: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ModelLoadError(f"{modules_path}: every entry needs a 'type' string, got {entry!r}")
    kind = entry["type"].rsplit(".", 1)[-1]
    if kind not in _SUPPORTED_MODULES:
        raise NotSupportedError(
            f"{modules_path}: sentence-transformers module {entry['type']!r} is not supported; agentkit"
            f" implements {', '.join(_SUPPORTED_MODULES)} modules only"
        )
    return kind


def parse_pooling(path: str) -> PoolingConfig:
    cfg = read_json(path, error=ModelLoadError)
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    if isinstance(cfg.get("pooling_mode"), str) and not any(
        cfg.get(f"pooling_mode_{m}") for m in _POOLING_MODES
    ):
        name = cfg["pooling_mode"]
        if name not in _POOLING_ALIASES:
            raise NotSupportedError(
                f"{path}: pooling_mode {name!r} is not supported; use one of {', '.join(_POOLING_ALIASES)}"
            )
        return PoolingConfig((_POOLING_ALIASES[name],))
    modes = tuple(m for m in _POOLING_MODES if cfg.get(f"pooling_mode_{m}"))
    unknown = sorted(
        k for k, v in cfg.items()
        if k.startswith("pooling_mode_") and v is True and k[len("pooling_mode_"):] not in _POOLING_MODES
    )
    if unknown:
        raise NotSupportedError(f"{path}: pooling modes {unknown} are not supported")
    if not modes:
        raise ModelLoadError(f"{path} enables no pooling mode (set e.g. pooling_mode_mean_tokens: true)")
    return PoolingConfig(modes)


def load_dense(module_dir: str) -> Dense:
    from safetensors.torch import load_file

    cfg_path = os.path.join(module_dir, "config.json")
    cfg = read_json(cfg_path, error=ModelLoadError)
    if not isinstance(cfg, dict) or "in_features" not in cfg or "out_features" not in cfg:
        raise ModelLoadError(f"{cfg_path} must give in_features and out_features of the Dense module")
    act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if act_name not in _ACTIVATIONS:
        raise NotSupportedError(
            f"{cfg_path}: Dense activation {cfg.get('activation_function')!r} is not supported; use one of"
            f" {', '.join(_ACTIVATIONS)}"
        )
    require_safetensors(module_dir)
    state: dict[str, torch.Tensor] = {}
    for path in _safetensors_in(module_dir):
        state.update(load_file(path, device="cpu"))
    weight = state.get("linear.weight")
    if weight is None:
        raise ModelLoadError(f"{module_dir}: Dense weights have no 'linear.weight' (found {sorted(state)})")
    if tuple(weight.shape) != (int(cfg["out_features"]), int(cfg["in_features"])):
        raise ModelLoadError(
            f"{module_dir}: linear.weight has shape {tuple(weight.shape)}, config says"
            f" ({cfg['out_features']}, {cfg['in_features']})"
        )
    bias = state.get("linear.bias") if cfg.get("bias", True) else None
    return Dense(weight.float(), None if bias is None else bias.float(), _ACTIVATIONS[act_name])


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Pool float32 `hidden` (B, T, H) over real tokens (`mask` (B, T), right padding)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    lengths = m.sum(1).clamp(min=1.0)  # (B, 1)
    out = []
    for mode in modes:
        if mode == "cls_token":
            out.append(hidden[:, 0])
        elif mode == "max_tokens":
            out.append(hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1))
        elif mode == "mean_tokens":
            out.append((hidden * m).sum(1) / lengths)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * m).sum(1) / lengths.sqrt())
        elif mode == "weightedmean_tokens":
            pos = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
            w = m * pos.view(1, -1, 1)
            out.append((hidden * w).sum(1) / w.sum(1).clamp(min=1.0))
        elif mode == "lasttoken":
            last = mask.sum(1).long() - 1
            out.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:  # pragma: no cover - guarded by parse_pooling
            raise NotSupportedError(f"pooling mode {mode!r} is not supported")
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)
