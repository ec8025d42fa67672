"""The AnyMoE MLP: a gate and n experts in place of one decoder layer's dense MLP.

Expert 0 is the base MLP itself (its `gate_up` / `down` linears stay children of this module
under the same names, so quantization, calibration and re-ISQ find them where they were). LoRA
experts add `B @ A * alpha / rank` to gate_proj / up_proj / down_proj at run time, low-rank: all
experts' factors are stacked (`LoraStack`), so a step costs the base MLP plus two thin matmuls per
projection whatever the number of experts, masked per row by a precomputed expert index (no host
sync; a row routed to the base adds an exact zero). FineTuned experts are full MLPs run on the
rows routed to them (the used experts are read on the host).

Routing (`AnyMoeConfig.routing`):
- "sequence" (mistral.rs): top-1 expert per token from the causal running mean of the gate
  distribution (`agentkit.plugins.anymoe.routing`); every token uses exactly one expert.
- "token" (agentkit extension): per token, the `top_k` non-base experts with the highest gate
  probability `p_j`, mixed into the always-on base expert: `base(x) + sum_j p_j (E_j(x) - base(x))`
  (a one-hot gate on expert j gives E_j exactly, on the base gives the base).

Scope: `MoeGate` (a `Linear(hidden -> n_experts)` kept in float32 and never quantized, so routing
does not move with the weight format) and `AnyMoeMLP` (the module, its routing and load counters).

Non-goals: building layers from a config (`agentkit.plugins.anymoe.plugin`), training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agentkit.plugins.anymoe.experts import FineTunedMLP, LoraDelta
from agentkit.plugins.anymoe.routing import StepContext, causal_route

__all__ = ["AnyMoeMLP", "LoraStack", "MoeGate"]


class MoeGate(nn.Module):
    """`softmax(x @ weight.T + bias)` in float32; saved as `moe_gate.{layer}.weight` / `.bias`."""

    def __init__(self, hidden: int, n_experts: int, device: torch.device, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / hidden ** 0.5  # torch.nn.Linear's default init range
        w = (torch.rand(n_experts, hidden, generator=generator) * 2 - 1) * bound
        b = (torch.rand(n_experts, generator=generator) * 2 - 1) * bound
        self.weight = nn.Parameter(w.to(device), requires_grad=False)
        self.bias = nn.Parameter(b.to(device), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, hidden] -> [T, n_experts]`` probabilities."""
        return torch.softmax(F.linear(x.float(), self.weight, self.bias), dim=-1)


@dataclass(frozen=True)
class LoraStack:
    """All LoRA experts' factors for one fused projection, expert-major: `a_t` `[fan_in, n]`,
    `b` `[n, out]` (scale folded in), `expert` `[n]` the expert (1..) each factor row belongs to."""

    a_t: torch.Tensor
    b: torch.Tensor
    expert: torch.Tensor


def _stack_lora(deltas: list[LoraDelta], modules: tuple[str, ...], fan_in: int, outs: list[int],
                dtype: torch.dtype, device: torch.device) -> LoraStack | None:
    """The stacked factors of the fused projection made of `modules` (output blocks of sizes
    `outs`); None if no expert has a delta there."""
    rank = next((a.shape[0] for d in deltas for a, _ in d.factors.values()), 0)
    if rank == 0 or not any(m in d.factors for d in deltas for m in modules):
        return None
    n = len(deltas) * len(modules) * rank
    a_all = torch.zeros(n, fan_in, dtype=dtype, device=device)
    b_all = torch.zeros(n, sum(outs), dtype=dtype, device=device)
    row = 0
    for d in deltas:
        col = 0
        for m, width in zip(modules, outs):
            if m in d.factors:
                a, b = d.factors[m]
                a_all[row:row + rank] = a
                b_all[row:row + rank, col:col + width] = b.t() * d.scale
            row, col = row + rank, col + width
    expert = torch.arange(1, len(deltas) + 1, device=device).repeat_interleave(len(modules) * rank)
    return LoraStack(a_all.t().contiguous(), b_all, expert)


class AnyMoeMLP(nn.Module):
    """Gate + experts for one decoder layer (`layer`); `index` is its position among the MoE layers."""

    def __init__(self, base: nn.Module, layer: int, index: int, gate: MoeGate, ctx: StepContext, *,
                 lora: list[LoraDelta] | None = None, finetuned: list[FineTunedMLP] | None = None,
                 routing: str = "sequence", top_k: int = 1) -> None:
        super().__init__()
        self.gate_up, self.down = base.gate_up, base.down
        self.layer, self.index, self.gate, self.ctx = layer, index, gate, ctx
        self.routing, self.top_k = routing, top_k
        self.n_experts = gate.weight.shape[0]
        self.experts = nn.ModuleList()
        for e in finetuned or []:
            mod = nn.Module()
            mod.gate_up, mod.down = e.gate_up, e.down
            self.experts.append(mod)
        self.lora_gu = self.lora_down = None
        if lora:
            w = self.gate_up.weight if isinstance(self.gate_up, nn.Linear) else None
            dtype = w.dtype if w is not None else getattr(self.gate_up, "dtype", torch.float32)
            device = gate.weight.device
            inter = self.gate_up.out_features // 2
            hidden = self.down.out_features
            self.lora_gu = _stack_lora(lora, ("gate_proj", "up_proj"), hidden, [inter, inter], dtype, device)
            self.lora_down = _stack_lora(lora, ("down_proj",), inter, [hidden], dtype, device)
        self.counts = torch.zeros(self.n_experts, dtype=torch.float64, device=gate.weight.device)
        self.prob_sum = torch.zeros(self.n_experts, dtype=torch.float64, device=gate.weight.device)
        self.entropy_sum = torch.zeros((), dtype=torch.float64, device=gate.weight.device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    # ---- experts -----------------------------------------------------------------------------
    def _base(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    @staticmethod
    def _lora_delta(stack: LoraStack, v: torch.Tensor, route: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`out` plus each row's expert's low-rank delta for input `v` (exactly zero for expert 0).
        All experts' factors run on every row and a mask keeps the row's own: no host sync, and a
        row's result does not depend on how the other rows are routed."""
        low = v @ stack.a_t
        low.mul_(route.unsqueeze(1) == stack.expert)
        return torch.addmm(out, low, stack.b)

    def _lora_expert(self, x: torch.Tensor, route: torch.Tensor, gu: torch.Tensor) -> torch.Tensor:
        """Output of each row's expert (LoRA kind), given the base `gate_up(x)` `gu`."""
        if self.lora_gu is not None:
            gu = self._lora_delta(self.lora_gu, x, route, gu)
        gate, up = gu.chunk(2, dim=-1)
        h = F.silu(gate) * up
        out = self.down(h)
        if self.lora_down is not None:
            out = self._lora_delta(self.lora_down, h, route, out)
        return out

    def _finetuned(self, j: int, x: torch.Tensor) -> torch.Tensor:
        e = self.experts[j - 1]
        gate, up = e.gate_up(x).chunk(2, dim=-1)
        return e.down(F.silu(gate) * up)

    def _routed(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Each row through its one expert (FineTuned experts: each used expert on its rows)."""
        if self.lora_gu is not None or self.lora_down is not None:
            return self._lora_expert(x, route, self.gate_up(x))
        used = sorted(set(route.tolist()))
        if used == [0]:
            return self._base(x)
        if len(used) == 1:
            return self._finetuned(used[0], x)
        out = torch.empty_like(x)
        for j in used:
            rows = (route == j).nonzero().squeeze(1)
            xj = x.index_select(0, rows)
            out.index_copy_(0, rows, self._base(xj) if j == 0 else self._finetuned(j, xj))
        return out

    def _token_mix(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Base expert always on, plus the top-k other experts weighted by their gate probability."""
        k = min(self.top_k, self.n_experts - 1)
        weights, picks = probs[:, 1:].topk(k, dim=-1)
        picks = picks + 1
        if self.experts:
            base = self._base(x)
            out = base.clone()
            for slot in range(k):
                for j in torch.unique(picks[:, slot]).tolist():
                    rows = (picks[:, slot] == j).nonzero().squeeze(1)
                    w = weights.index_select(0, rows)[:, slot:slot + 1].to(x.dtype)
                    diff = self._finetuned(j, x.index_select(0, rows)) - base.index_select(0, rows)
                    out.index_add_(0, rows, w * diff)
            return out
        gu = self.gate_up(x)
        gate, up = gu.chunk(2, dim=-1)
        base = self.down(F.silu(gate) * up)
        out = base
        for slot in range(k):
            out = out + weights[:, slot:slot + 1].to(x.dtype) * (self._lora_expert(x, picks[:, slot], gu) - base)
        return out

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, hidden] -> [T, hidden]``: route (see the module docstring), then run the experts."""
        ctx = self.ctx
        if ctx.trainer is not None:
            ctx.trainer(self, x.detach().float())
        probs = self.gate(x)
        if self.routing == "token":
            route = probs.argmax(-1)
            out = self._token_mix(x, probs)
        else:
            route = causal_route(ctx, self.index, probs)
            out = self._routed(x, route)
        if not ctx.counting:
            ctx.last_routes[self.layer], ctx.last_probs[self.layer] = route, probs
            if ctx.stop_after == self.layer:
                raise ctx.stop_signal()
        else:
            self._pending.append((route, probs))
            if len(self._pending) >= 256:
                self.fold_stats()
        return out

    def fold_stats(self) -> None:
        """Add the routes and gate probabilities kept since the last fold to the counters (kept as
        references per step and folded in bulk: a few ops per 256 steps instead of per step)."""
        if not self._pending:
            return
        routes = torch.cat([r for r, _ in self._pending])
        probs = torch.cat([p for _, p in self._pending])
        self._pending.clear()
        self.counts += torch.bincount(routes, minlength=self.n_experts)
        self.prob_sum += probs.sum(0)
        self.entropy_sum += torch.special.entr(probs).sum()

    def reset_stats(self) -> None:
        """Zero the load, mean-probability and entropy counters."""
        self._pending.clear()
        self.counts.zero_()
        self.prob_sum.zero_()
        self.entropy_sum.zero_()
