"""The Runner's AnyMoE methods (agentkit extensions): routing statistics and held-out accuracy.

Scope: the result records (`AnyMoeLayerStats`, `AnyMoeRoutingStats`, `AnyMoeEvaluation`) and the
`AnyMoeMethods` mixin of `agentkit.runner.Runner`: `anymoe_routing_stats`, `anymoe_reset_stats`,
`anymoe_evaluate`. The work is done by the AnyMoE plugin's per-model state
(`agentkit.plugins.anymoe.state`) on the model's engine thread, between engine steps.

Non-goals: building the mixture (the built-in AnyMoE plugin does it at load), importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["AnyMoeEvaluation", "AnyMoeLayerStats", "AnyMoeMethods", "AnyMoeRoutingStats"]


@dataclass(frozen=True)
class AnyMoeLayerStats:
    """Routing of one MoE layer since the last reset.

    `load[j]`: fraction of routed tokens that used expert j (top-1; in token routing the most
    probable expert); `mean_probs[j]`: the gate's mean probability for j; `entropy`: the mean
    per-token entropy of the gate distribution in nats (0 = certain, ln(n) = uniform).
    """

    layer: int
    tokens: int
    load: list[float]
    mean_probs: list[float]
    entropy: float


@dataclass(frozen=True)
class AnyMoeRoutingStats:
    """Per-layer routing statistics plus their average over the MoE layers."""

    layers: list[AnyMoeLayerStats]
    load: list[float]
    entropy: float


@dataclass(frozen=True)
class AnyMoeEvaluation:
    """Routing accuracy on labelled prompts: each prompt's expert per layer (decided at its last token).

    `accuracy`: fraction of (prompt, layer) decisions equal to the label; `per_layer`: the same by
    layer; `prompt_accuracy`: fraction of prompts routed right in every MoE layer; `confusion[i][j]`:
    (prompt, layer) decisions for label i that went to expert j; `routes[p]`: prompt p's expert per layer.
    """

    accuracy: float
    per_layer: dict[int, float]
    prompt_accuracy: float
    confusion: list[list[int]]
    routes: list[list[int]]


class AnyMoeMethods:
    """Mixin: needs `self._host(model_id)` (a served model) from the Runner."""

    def _host(self, model_id: str | None) -> Any:  # pragma: no cover - the Runner's
        raise NotImplementedError

    def _anymoe(self, model_id: str | None) -> tuple[Any, Any]:
        host = self._host(model_id)
        engine = getattr(getattr(host, "backend", None), "engine", None)
        state = getattr(getattr(getattr(engine, "runner", None), "model", None), "anymoe", None)
        if state is None:
            raise ValueError(f"model {host.model_id!r} is not an AnyMoE model: pass anymoe_config= to Runner")
        return host, state

    def anymoe_routing_stats(self, model_id: str | None = None) -> AnyMoeRoutingStats:
        """Per-expert load and gate entropy of every MoE layer over the requests served since the
        last `anymoe_reset_stats` (an agentkit extension). Every token the experts processed counts,
        speculative draft tokens that verification rejected included."""
        host, state = self._anymoe(model_id)
        return host.backend.call(state.routing_stats).result()

    def anymoe_reset_stats(self, model_id: str | None = None) -> None:
        """Zero the routing statistics (an agentkit extension)."""
        host, state = self._anymoe(model_id)
        host.backend.call(state.reset_stats).result()

    def anymoe_evaluate(self, dataset: str | Iterable[Any], model_id: str | None = None) -> AnyMoeEvaluation:
        """Route labelled prompts (a dataset path in the training format, or `(prompt, expert)` pairs)
        through the chat template and report the routing accuracy (an agentkit extension).

        The prompts run on the engine thread in a scratch KV pool; they count in no statistics.
        """
        host, state = self._anymoe(model_id)
        rows = state.rows(dataset)
        return host.backend.call(lambda: state.evaluate(rows)).result()
