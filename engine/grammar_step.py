"""Constrained decoding inside one engine step: masks overlapped with the forward, outcomes as values.

Scope: `GrammarStep` starts the allowed-token masks of a step's constrained rows on a worker thread
before the forward (the state for step t depends only on tokens up to t-1), joins them after it
(`masks`), and consumes the sampled tokens afterwards (`advance`). What the grammars decided comes
back as a `GrammarOutcome` value: the masks of the rows to sample, the sequences whose grammar is
complete (they end with "stop") and the requests that failed. The engine loop applies it.

Non-goals: compiling grammars and computing masks (agentkit.engine.grammar, grammar_masks), sampling, finishing
on EOS or length (the scheduler's `postprocess`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.engine.grammar_masks import GrammarStats, MaskBatch, MaskWorker, compute_masks

if TYPE_CHECKING:
    import torch

    from agentkit.engine.sequence import EngineRequest, Sequence


@dataclass(slots=True)
class GrammarOutcome:
    """What the grammars decided for one step's rows."""

    allowed: dict[int, Any] = field(default_factory=dict)  # seq_id -> allowed-token mask
    stopped: list[Sequence] = field(default_factory=list)  # grammar complete: finish with "stop"
    failed: dict[str, tuple[EngineRequest, str]] = field(default_factory=dict)  # request_id -> error

    def to_sample(self, seqs: list[Sequence], logits: torch.Tensor) -> tuple[list[Sequence], torch.Tensor]:
        """The sequences (and their logit rows) still to sample: not stopped, request not failed."""
        keep = [i for i, s in enumerate(seqs) if s.finish_reason is None and s.request.request_id not in self.failed]
        if len(keep) == len(seqs):
            return seqs, logits
        return [seqs[i] for i in keep], logits[keep]


class _Done:
    """An already computed result with a Future's `result()` (masks computed inline)."""

    def __init__(self, value: MaskBatch) -> None:
        self.value = value

    def result(self) -> MaskBatch:
        return self.value


class GrammarStep:
    """The engine's constrained-decoding helper: one mask worker and counters (`stats`)."""

    def __init__(self) -> None:
        self.worker = MaskWorker()
        self.stats = GrammarStats()

    def start(self, seqs: list[Sequence], overlap: bool = True) -> Any:
        """Start the masks of `seqs` (constrained rows to sample); join them with `masks`.
        `overlap=False` computes them now, before the forward (the benchmark baseline)."""
        jobs = [(s.matcher, s.params.ignore_eos) for s in seqs]
        return self.worker.submit(jobs) if overlap else _Done(compute_masks(jobs))

    def masks(self, job: Any) -> MaskBatch:
        """Wait for a started job's masks (always, before anything touches the matchers again)."""
        t0 = time.perf_counter()
        masks = job.result()
        st = self.stats
        st.wait_s += masks.compute_s if isinstance(job, _Done) else time.perf_counter() - t0
        st.mask_s += masks.compute_s
        st.steps += 1
        st.rows += len(masks.rows)
        return masks

    @staticmethod
    def outcome(seqs: list[Sequence], masks: MaskBatch) -> GrammarOutcome:
        """The outcome of `seqs`' masks: allowed tokens, completed grammars, errors."""
        out = GrammarOutcome()
        for s, m in zip(seqs, masks.rows):
            if m.error is not None:
                out.failed.setdefault(s.request.request_id, (s.request, f"constrained decoding failed: {m.error}"))
            elif m.stopped:
                out.stopped.append(s)
            else:
                out.allowed[s.seq_id] = m.allowed
        return out

    def advance(self, seqs: list[Sequence]) -> GrammarOutcome:
        """Consume each constrained sequence's last (sampled) token: a grammar now complete stops
        its sequence unless a stop string already did; a token the grammar refuses fails the request."""
        out = GrammarOutcome()
        for s in seqs:
            if s.matcher is None:
                continue
            token = s.token_ids[-1]
            t0 = time.perf_counter()
            ok = s.matcher.consume(token)
            stopped = ok and s.matcher.is_stopped()
            self.stats.consume_s += time.perf_counter() - t0
            if not ok:
                out.failed.setdefault(s.request.request_id, (s.request, (
                    f"constrained decoding failed: token {token} does not satisfy the grammar ({s.matcher.error})")))
            elif stopped and s.stop_sequence is None:
                out.stopped.append(s)
        return out

    def shutdown(self) -> None:
        self.worker.shutdown()
