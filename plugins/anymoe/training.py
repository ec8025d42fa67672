"""AnyMoE gate training: features from the frozen model, then AdamW on the gates alone.

mistral.rs runs the whole model on every mini-batch of every epoch and backpropagates each
layer's loss into that layer's gate. Only the gates are trainable and a gate's input does not
depend on any gate's *weights* (the top-1 choice upstream is not differentiable), so each step
only needs every MoE layer's input for each prompt. We run the frozen model once per training
prompt with every MoE layer **forced to the prompt's labelled expert** (the routing a perfectly
trained gate gives the prompt), keep each MoE layer's input `[T, hidden]`, and train on those:
the same loss and optimizer, `epochs x ceil(rows / batch_size)` steps, a fraction of the cost.

Loss, as mistral.rs: per layer, the softmax of the gate logits averaged over the prompt's tokens
(`[batch, n_experts]`) goes into `cross_entropy(mean_probs, label)` (candle's cross-entropy
applies log-softmax to its input, so the mean probabilities act as logits); AdamW(lr, betas
0.9/0.999, eps 1e-8, no weight decay); rows shuffled each epoch (seeded by the Runner's `seed`,
else 0). The CSV (`loss_csv_path`) has mistral.rs's columns: `Step`, then `Gating layer i` for
the i-th MoE layer (in layer order), one row `Step {n}` per optimizer step, losses to 4 decimals.

Scope: `collect_features`, `train_gates`, `write_loss_csv`.

Non-goals: training anything but the gates; images.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from agentkit.errors import ConfigError
from agentkit.plugins.anymoe.dataset import TrainingRow
from agentkit.plugins.anymoe.layer import AnyMoeMLP
from agentkit.plugins.anymoe.routing import StepContext

__all__ = ["collect_features", "train_gates", "write_loss_csv"]


def collect_features(model: Any, ctx: StepContext, encode: Callable[[str], list[int]] | None,
                     rows: list[TrainingRow], progress: bool = False) -> dict[int, list[torch.Tensor]]:
    """Each MoE layer's input `[T, hidden]` (float32) per row, with every layer forced to the row's expert."""
    from tqdm.auto import tqdm

    if encode is None:
        raise ConfigError("AnyMoE training needs the model's tokenizer; it is only available when the model is "
                          "loaded by a Runner")
    features: dict[int, list[torch.Tensor]] = {}
    ctx.counting = False
    try:
        for row in tqdm(rows, desc="AnyMoE: hidden states", disable=not progress, leave=False):
            ctx.forced, ctx.record = row.expert, {}
            model.logits_for(encode(row.prompt), last=1)
            for layer, xs in ctx.record.items():
                features.setdefault(layer, []).append(torch.cat(xs).clone())
    finally:
        ctx.forced, ctx.record, ctx.counting = None, None, True
    return features


def train_gates(layers: list[AnyMoeMLP], features: dict[int, list[torch.Tensor]], labels: list[int], *,
                lr: float, epochs: int, batch_size: int, seed: int = 0, progress: bool = True) -> list[list[float]]:
    """Train the gates of `layers` in place; return the per-step losses, one list (per layer) per step."""
    from tqdm.auto import tqdm

    if not layers or epochs == 0:
        return []
    device = layers[0].gate.weight.device
    n_rows = len(labels)
    lengths = torch.tensor([f.shape[0] for f in features[layers[0].layer]], device=device)
    t_max = int(lengths.max())
    hidden = layers[0].gate.weight.shape[1]
    xs = torch.zeros(len(layers), n_rows, t_max, hidden, device=device)
    for li, m in enumerate(layers):
        for i, f in enumerate(features[m.layer]):
            xs[li, i, : f.shape[0]] = f.to(device)
    mask = (torch.arange(t_max, device=device) < lengths.unsqueeze(1)).float()  # [N, T]
    weight = torch.stack([m.gate.weight.detach().float() for m in layers]).clone().requires_grad_(True)
    bias = torch.stack([m.gate.bias.detach().float() for m in layers]).clone().requires_grad_(True)
    opt = torch.optim.AdamW([weight, bias], lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    target = torch.tensor(labels, device=device)
    gen = torch.Generator().manual_seed(seed)
    losses: list[list[float]] = []
    with torch.enable_grad():
        for _ in tqdm(range(epochs), desc="Training gating layers", disable=not progress):
            order = torch.randperm(n_rows, generator=gen).to(device)
            for start in range(0, n_rows, batch_size):
                idx = order[start:start + batch_size]
                m_b = mask.index_select(0, idx)
                logits = torch.einsum("lbth,lnh->lbtn", xs.index_select(1, idx), weight) + bias[:, None, None, :]
                probs = torch.softmax(logits, dim=-1) * m_b[None, :, :, None]
                mean = probs.sum(2) / m_b.sum(1)[None, :, None]  # [L, B, n]
                per_layer = torch.stack([F.cross_entropy(mean[li], target.index_select(0, idx))
                                         for li in range(len(layers))])
                opt.zero_grad()
                per_layer.sum().backward()
                opt.step()
                losses.append([float(v) for v in per_layer.detach().cpu()])
    for li, m in enumerate(layers):
        m.gate.weight.data.copy_(weight.detach()[li])
        m.gate.bias.data.copy_(bias.detach()[li])
    return losses


def write_loss_csv(path: str, losses: list[list[float]]) -> None:
    """mistral.rs's loss CSV: `Step, Gating layer 0, ...`; rows `Step {n}, {loss:.4f}, ...`."""
    n_layers = len(losses[0]) if losses else 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Step"] + [f"Gating layer {i}" for i in range(n_layers)])
        for step, row in enumerate(losses):
            writer.writerow([f"Step {step}"] + [f"{v:.4f}" if math.isfinite(v) else str(v) for v in row])
