"""AnyMoE gate training: one pass of the frozen model, each gate trained when the pass reaches it.

mistral.rs runs the whole model on every mini-batch of every epoch and backpropagates each
layer's loss into that layer's gate. Only the gates train, and a gate's input depends only on
the layers before it (the top-1 choice upstream is not differentiable), so we run every training
prompt once, packed into one varlen forward: when it reaches an MoE layer, that layer's gate is
fitted on the layer's input for all prompts (AdamW over mini-batches for `epochs`, and/or the
`gate_init="hidden"` centroids), then the layer routes with it and the forward goes on. Each gate
is thus trained on the hidden states it will see when serving (upstream layers already routing
with their trained gates, token by token as at inference), for the cost of one prefill of the
dataset. The pass runs on dense weights and stops after the last MoE layer
(`agentkit.plugins.anymoe.probe`); it holds the whole dataset's activations at once.

Loss, as mistral.rs: per layer, the softmax of the gate logits averaged over the prompt's tokens
(`[batch, n_experts]`) goes into `cross_entropy(mean_probs, label)` (candle's cross-entropy
applies log-softmax to its input, so the mean probabilities act as logits); AdamW(lr, betas
0.9/0.999, eps 1e-8, no weight decay); rows shuffled each epoch (seeded by the Runner's `seed`,
else 0). The CSV (`loss_csv_path`) has mistral.rs's columns: `Step`, then `Gating layer i` for
the i-th MoE layer (in layer order), one row `Step {n}` per optimizer step (every layer takes the
same steps), losses to 4 decimals.

Scope: `fit_gates`, `train_gates`, `write_loss_csv`.

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
from agentkit.plugins.anymoe.gates import hidden_init
from agentkit.plugins.anymoe.layer import AnyMoeMLP
from agentkit.plugins.anymoe.probe import dense_weights, forward_prompts
from agentkit.plugins.anymoe.routing import StepContext

__all__ = ["fit_gates", "train_gates", "write_loss_csv"]


def fit_gates(model: Any, ctx: StepContext, layers: list[AnyMoeMLP], encode: Callable[[str], list[int]] | None,
              rows: list[TrainingRow], cfg: Any, seed: int = 0, progress: bool = True) -> list[list[float]]:
    """Set every gate of `layers` from `rows` (see the module doc); return the per-step losses
    (one list with a loss per layer per step; empty when `cfg.training` is False)."""
    if encode is None:
        raise ConfigError("AnyMoE training needs the model's tokenizer; it is only available when the model is "
                          "loaded by a Runner")
    labels = [r.expert for r in rows]
    per_layer: list[list[float]] = []

    def fit(moe: AnyMoeMLP, x: torch.Tensor) -> None:
        with torch.inference_mode(False):
            feats = [x[p.begin:p.end].clone() for p in ctx.meta.prefills]
            if cfg.gate_init == "hidden":
                hidden_init([moe], {moe.layer: feats}, labels)
            if cfg.training:
                losses = train_gates([moe], {moe.layer: feats}, labels, lr=cfg.lr, epochs=cfg.epochs,
                                     batch_size=cfg.batch_size, seed=seed, progress=progress)
                per_layer.append([step[0] for step in losses])

    ctx.trainer = fit
    try:
        with dense_weights(list(model.layers[: layers[-1].layer + 1]), model.dtype):
            forward_prompts(model, ctx, [encode(r.prompt) for r in rows], layers[-1].layer,
                            lambda _batch, _spans: None, token_budget=2**62)
    finally:
        ctx.trainer = None
    return [list(step) for step in zip(*per_layer)]


class _AdamW:
    """AdamW with mistral.rs's settings (betas 0.9/0.999, eps 1e-8, weight decay 0), written out:
    `torch.optim` imports torch._dynamo on first use (seconds of start-up for a few steps)."""

    def __init__(self, params: list[torch.Tensor], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            m.mul_(0.9).add_(p.grad, alpha=0.1)
            v.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
            p.sub_(self.lr * (m / c1) / ((v / c2).sqrt() + 1e-8))


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
    opt = _AdamW([weight, bias], lr)
    target = torch.tensor(labels, device=device)
    gen = torch.Generator().manual_seed(seed)
    losses: list[list[float]] = []
    n_layers = len(layers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: on a shared CPU, OpenMP barriers cost more than they save
    try:
        for _ in tqdm(range(epochs), desc="Training gating layers", disable=not progress):
            order = torch.randperm(n_rows, generator=gen).to(device)
            for start in range(0, n_rows, batch_size):
                idx = order[start:start + batch_size]
                m_b = mask.index_select(0, idx)
                with torch.enable_grad():
                    logits = torch.einsum("lbth,lnh->lbtn", xs.index_select(1, idx), weight) + bias[:, None, None, :]
                    probs = torch.softmax(logits, dim=-1) * m_b[None, :, :, None]
                    mean = probs.sum(2) / m_b.sum(1)[None, :, None]  # [L, B, n]
                    per_layer = F.cross_entropy(mean.flatten(0, 1), target.index_select(0, idx).repeat(n_layers),
                                                reduction="none").view(n_layers, -1).mean(1)
                    weight.grad = bias.grad = None
                    per_layer.sum().backward()
                opt.step()
                losses.append(per_layer.detach().cpu().tolist())
    finally:
        torch.set_num_threads(threads)
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
