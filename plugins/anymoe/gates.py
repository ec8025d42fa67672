"""AnyMoE gate weights: `{gate_model_id}/gate.safetensors` and the zero-training `gate_init="hidden"`.

Scope:
- `save_gates` / `load_gates`: mistral.rs's file, one `moe_gate.{layer}.weight` `[n_experts, hidden]`
  and `moe_gate.{layer}.bias` `[n_experts]` per MoE layer (the decoder layer's index), float32.
  Loading checks every selected layer is present with the right shape (ConfigError otherwise).
- `hidden_init`: gates from the mean hidden states of each expert's prompts (mergekit-moe's
  "hidden" mode, centred and scaled per dimension): with `mu_j` the mean MLP input of expert j's
  prompts, `mu` the mean of those and `var` the per-dimension variance of prompts around their
  expert's mean, expert j's gate row is `w_j = beta * d_j / (d_j . (mu_j - mu))` with
  `d_j = (mu_j - mu) / var` (a diagonal linear discriminant: LLM hidden states have a few huge
  dimensions that would otherwise decide alone) and its bias `-w_j . mu`, so an expert's centroid
  scores `beta` for it and what every expert's prompts share (the chat template) about 0.
  `beta` = 8.

Non-goals: gradient training (`agentkit.plugins.anymoe.training`).
"""

from __future__ import annotations

import os

import torch

from agentkit.errors import ConfigError
from agentkit.plugins.anymoe.layer import AnyMoeMLP

__all__ = ["GATE_FILE", "HIDDEN_INIT_BETA", "hidden_init", "load_gates", "save_gates"]

GATE_FILE = "gate.safetensors"
HIDDEN_INIT_BETA = 8.0


def save_gates(layers: list[AnyMoeMLP], gate_model_id: str) -> str:
    """Write every MoE layer's gate to `{gate_model_id}/gate.safetensors`; return the path."""
    from safetensors.torch import save_file

    os.makedirs(gate_model_id, exist_ok=True)
    tensors = {}
    for m in layers:
        tensors[f"moe_gate.{m.layer}.weight"] = m.gate.weight.detach().float().cpu().contiguous()
        tensors[f"moe_gate.{m.layer}.bias"] = m.gate.bias.detach().float().cpu().contiguous()
    path = os.path.join(gate_model_id, GATE_FILE)
    save_file(tensors, path)
    return path


def load_gates(layers: list[AnyMoeMLP], gate_model_id: str) -> None:
    """Read `{gate_model_id}/gate.safetensors` into the layers' gates (every layer must be there)."""
    from safetensors import safe_open

    path = os.path.join(gate_model_id, GATE_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"AnyMoeConfig.gate_model_id: no {GATE_FILE} in {gate_model_id!r}; train gates with "
                          "training=True and gate_model_id=<dir> to write it, or use gate_init='hidden'")
    with safe_open(path, framework="pt", device="cpu") as f:
        keys = set(f.keys())
        for m in layers:
            for part, param in (("weight", m.gate.weight), ("bias", m.gate.bias)):
                key = f"moe_gate.{m.layer}.{part}"
                if key not in keys:
                    raise ConfigError(f"{path} has no {key!r}: the gates were trained for other layers "
                                      f"({sorted({k.split('.')[1] for k in keys}, key=int)})")
                t = f.get_tensor(key)
                if tuple(t.shape) != tuple(param.shape):
                    raise ConfigError(f"{path}: {key} has shape {tuple(t.shape)}, this AnyMoE needs "
                                      f"{tuple(param.shape)} (hidden size x {param.shape[0]} experts)")
                param.data.copy_(t.to(param.device, param.dtype))


def hidden_init(layers: list[AnyMoeMLP], features: dict[int, list[torch.Tensor]], labels: list[int]) -> None:
    """Set each gate from the centred mean hidden state of each expert's prompts (see the module doc).

    `features[layer][i]` is prompt i's MLP input `[T_i, hidden]` at that layer.
    """
    for m in layers:
        n = m.n_experts
        per_prompt = torch.stack([f.mean(0) for f in features[m.layer]])  # [N, hidden]
        lab = torch.tensor(labels, device=per_prompt.device)
        missing = [j for j in range(n) if not bool((lab == j).any())]
        if missing:
            raise ConfigError(f"gate_init='hidden' needs prompts for every expert; the dataset has none for "
                              f"expert(s) {missing}")
        centroids = torch.stack([per_prompt[lab == j].mean(0) for j in range(n)])  # [n, hidden]
        mu = centroids.mean(0)
        diff = centroids - mu
        spread = per_prompt - centroids[lab]
        var = spread.pow(2).mean(0) + 1e-2 * spread.pow(2).mean() + 1e-12  # within-expert, per dimension
        direction = diff / var
        rows = HIDDEN_INIT_BETA * direction / (direction * diff).sum(-1, keepdim=True).clamp(min=1e-12)
        m.gate.weight.data.copy_(rows.to(m.gate.weight.device))
        m.gate.bias.data.copy_((-(rows @ mu)).to(m.gate.bias.device))
