"""One AnyMoE model's live state: its MoE layers, their step context, statistics and evaluation.

Scope: `AnyMoeState`, attached to the model as `model.anymoe` by the plugin, read by the Runner's
`AnyMoeMethods` (`agentkit.models.anymoe`) through calls run on the engine thread: routing
statistics (per-expert load, mean gate probabilities, per-token gate entropy), resetting them,
and routing accuracy on labelled prompts (run in a scratch KV pool, never counted).

Non-goals: building the layers or training (`agentkit.plugins.anymoe.plugin`, `.training`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from agentkit.models.anymoe import AnyMoeEvaluation, AnyMoeLayerStats, AnyMoeRoutingStats
from agentkit.plugins.anymoe.dataset import TrainingRow, load_rows
from agentkit.plugins.anymoe.layer import AnyMoeMLP
from agentkit.plugins.anymoe.probe import forward_prompts
from agentkit.plugins.anymoe.routing import StepContext

__all__ = ["AnyMoeState"]


class AnyMoeState:
    """The MoE layers of one model (in layer order) and what serving and statistics need."""

    def __init__(self, model: Any, layers: list[AnyMoeMLP], ctx: StepContext,
                 encode: Callable[[str], list[int]] | None, routing: str) -> None:
        self.model, self.layers, self.ctx, self.encode, self.routing = model, layers, ctx, encode, routing
        self.n_experts = layers[0].n_experts
        self.training_losses: list[list[float]] = []
        self.training_seconds = 0.0
        self.training_cpu_seconds = 0.0  # CPU time of the process meanwhile (all threads)

    def rows(self, data: str | os.PathLike[str] | Iterable[Any]) -> list[TrainingRow]:
        """Labelled rows from a dataset path or pairs, checked against this model's expert count."""
        return load_rows(data, self.n_experts)

    def routing_stats(self) -> AnyMoeRoutingStats:
        """Statistics since the last reset (run on the engine thread)."""
        per_layer = []
        for m in self.layers:
            m.fold_stats()
            tokens = float(m.counts.sum())
            denom = tokens or 1.0
            per_layer.append(AnyMoeLayerStats(
                layer=m.layer, tokens=int(tokens), load=[float(c) / denom for c in m.counts],
                mean_probs=[float(p) / denom for p in m.prob_sum], entropy=float(m.entropy_sum) / denom))
        n = len(per_layer)
        load = [sum(s.load[j] for s in per_layer) / n for j in range(self.n_experts)]
        return AnyMoeRoutingStats(per_layer, load, sum(s.entropy for s in per_layer) / n)

    def reset_stats(self) -> None:
        """Zero every layer's counters (run on the engine thread)."""
        for m in self.layers:
            m.reset_stats()

    def decide(self, prompts: list[str]) -> list[list[int]]:
        """Each MoE layer's expert for each prompt (rendered by the chat template), decided at its last
        token: the routed expert (sequence routing) or the top expert of the prompt's mean gate
        distribution (token routing). Runs the prompts packed, in scratch KV pools, up to the last MoE layer."""
        if self.encode is None:
            raise ValueError("this AnyMoE model has no tokenizer to encode prompts with")
        ctx = self.ctx
        out: list[list[int]] = [[] for _ in prompts]

        def read(batch: list[int], spans: list[tuple[int, int]]) -> None:
            for i, (b, e) in zip(batch, spans):
                if self.routing == "token":
                    out[i] = [int(ctx.last_probs[m.layer][b:e].mean(0).argmax()) for m in self.layers]
                else:
                    out[i] = [int(ctx.last_routes[m.layer][e - 1]) for m in self.layers]
            ctx.last_routes, ctx.last_probs = {}, {}

        forward_prompts(self.model, ctx, [self.encode(p) for p in prompts], self.layers[-1].layer, read)
        return out

    def evaluate(self, rows: list[TrainingRow]) -> AnyMoeEvaluation:
        """Routing accuracy of `rows` (run on the engine thread)."""
        n = self.n_experts
        confusion = [[0] * n for _ in range(n)]
        hits = {m.layer: 0 for m in self.layers}
        routes, whole = self.decide([r.prompt for r in rows]), 0
        for row, decided in zip(rows, routes):
            for m, j in zip(self.layers, decided):
                confusion[row.expert][j] += 1
                hits[m.layer] += int(j == row.expert)
            whole += int(all(j == row.expert for j in decided))
        total = len(rows) * len(self.layers)
        return AnyMoeEvaluation(accuracy=sum(hits.values()) / total,
                                per_layer={k: v / len(rows) for k, v in hits.items()},
                                prompt_accuracy=whole / len(rows), confusion=confusion, routes=routes)
