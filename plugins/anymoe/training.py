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

Scope: `fit_gates`, `train_gate` (with `loss_and_grads`), `write_loss_csv`.

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

__all__ = ["fit_gates", "loss_and_grads", "train_gate", "write_loss_csv"]


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
        with torch.inference_mode(False), torch.no_grad():
            feats = [x[p.begin:p.end].clone() for p in ctx.meta.prefills]
            if cfg.gate_init == "hidden":
                hidden_init([moe], {moe.layer: feats}, labels)
            if cfg.training:
                per_layer.append(train_gate(moe.gate, feats, labels, lr=cfg.lr, epochs=cfg.epochs,
                                            batch_size=cfg.batch_size, seed=seed, progress=progress))

    ctx.trainer = fit
    try:
        with dense_weights(list(model.layers[: layers[-1].layer + 1]), model.dtype):
            forward_prompts(model, ctx, [encode(r.prompt) for r in rows], layers[-1].layer,
                            lambda _batch, _spans: None, token_budget=2**62)
    finally:
        ctx.trainer = None
    return [list(step) for step in zip(*per_layer)]


def loss_and_grads(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mistral.rs's gate loss for one mini-batch and its gradients, written out (no autograd: a
    step is a handful of small ops, ~3x faster than autograd's bookkeeping on a shared CPU).

    `x` `[B, T, hidden]` (padded), `mask` `[B, T]` 1.0 on real tokens, `labels` `[B]`. With
    `p_t = softmax(W x_t + b)` and `q = mean_t p_t`, loss = mean_b cross_entropy(q_b, y_b), so
    `dL/dq = (softmax(q) - onehot(y)) / B` and `dL/dz_t = (p_t * g - p_t (p_t . g)) / T`.
    Returns (loss, dL/dW, dL/db)."""
    lengths = mask.sum(1)  # [B]
    p = torch.softmax(x @ weight.t() + bias, dim=-1) * mask[..., None]  # [B, T, n]
    q = p.sum(1) / lengths[:, None]  # [B, n]
    loss = F.cross_entropy(q, labels)
    g = (torch.softmax(q, dim=-1) - F.one_hot(labels, q.shape[-1]).to(q.dtype)) / q.shape[0]
    pg = p * g[:, None, :]
    dz = (pg - p * pg.sum(-1, keepdim=True)) / lengths[:, None, None]
    return loss, torch.einsum("btn,bth->nh", dz, x), dz.sum((0, 1))


def train_gate(gate: Any, features: list[torch.Tensor], labels: list[int], *, lr: float, epochs: int,
               batch_size: int, seed: int = 0, progress: bool = True) -> list[float]:
    """Train one gate in place on its layer's inputs (`features[i]` `[T_i, hidden]` for row i) with
    AdamW as mistral.rs (betas 0.9/0.999, eps 1e-8, no weight decay); return the loss of every step."""
    from tqdm.auto import tqdm

    device = gate.weight.device
    n_rows = len(labels)
    lengths = torch.tensor([f.shape[0] for f in features], device=device)
    t_max = int(lengths.max())
    xs = torch.zeros(n_rows, t_max, gate.weight.shape[1], device=device)
    for i, f in enumerate(features):
        xs[i, : f.shape[0]] = f.to(device, torch.float32)
    mask = (torch.arange(t_max, device=device) < lengths.unsqueeze(1)).float()
    target = torch.tensor(labels, device=device)
    params = [gate.weight.detach().float().clone(), gate.bias.detach().float().clone()]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    threads, step = torch.get_num_threads(), 0
    torch.set_num_threads(1)  # tiny ops: on a shared CPU, OpenMP barriers cost more than they save
    try:
        for _ in tqdm(range(epochs), desc="Training gating layers", disable=not progress, leave=False):
            order = torch.randperm(n_rows, generator=gen).to(device)
            for start in range(0, n_rows, batch_size):
                idx = order[start:start + batch_size]
                loss, *grads = loss_and_grads(params[0], params[1], xs.index_select(0, idx), mask.index_select(0, idx),
                                              target.index_select(0, idx))
                step += 1
                c1, c2 = 1 - 0.9 ** step, 1 - 0.999 ** step
                for p, grad, (m, v) in zip(params, grads, moments):
                    m.mul_(0.9).add_(grad, alpha=0.1)
                    v.mul_(0.999).addcmul_(grad, grad, value=0.001)
                    p.sub_(lr * (m / c1) / ((v / c2).sqrt() + 1e-8))
                losses.append(float(loss))
    finally:
        torch.set_num_threads(threads)
    gate.weight.data.copy_(params[0])
    gate.bias.data.copy_(params[1])
    return losses


def write_loss_csv(path: str, losses: list[list[float]]) -> None:
    """mistral.rs's loss CSV: `Step, Gating layer 0, ...`; rows `Step {n}, {loss:.4f}, ...`."""
    n_layers = len(losses[0]) if losses else 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Step"] + [f"Gating layer {i}" for i in range(n_layers)])
        for step, row in enumerate(losses):
            writer.writerow([f"Step {step}"] + [f"{v:.4f}" if math.isfinite(v) else str(v) for v in row])
