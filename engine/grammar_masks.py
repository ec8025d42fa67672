"""Token masks of a step's constrained rows, computed in one batch on a worker thread.

Scope: `compute_masks` fills the allowed-token bitmask of every matcher of a step at once
(llguidance's batched fill), unpacks it to bool rows and reports each row as allowed, stopped
(grammar complete) or failed (`RowMask`, `MaskBatch`); `MaskWorker` runs it on one worker thread
so it overlaps the forward pass; `GrammarStats` counts rows and seconds for the benchmarks.

Non-goals: compiling grammars and matcher state (`agentkit.engine.grammar`), applying outcomes to
sequences (`agentkit.engine.grammar_step`).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from agentkit.engine.grammar import GrammarMatcher, unpack_bitmask

__all__ = ["GrammarStats", "MaskBatch", "MaskWorker", "RowMask", "compute_masks"]


@dataclass(slots=True)
class RowMask:
    """One matcher's outcome for a step: its bool mask, or stopped (grammar complete), or an error."""

    allowed: torch.Tensor | None = None
    stopped: bool = False
    error: str | None = None


@dataclass(slots=True)
class MaskBatch:
    """Masks of one step, in job order, and the seconds spent computing them."""

    rows: list[RowMask]
    compute_s: float


@dataclass(slots=True)
class GrammarStats:
    """Engine counters for constrained decoding (benchmarks): mask rows computed, seconds in the
    matchers (`mask_s` on the worker, `consume_s` on the engine thread) and `wait_s`, the engine
    thread's time blocked on masks after the forward (the part of `mask_s` not hidden by it)."""

    steps: int = 0
    rows: int = 0
    mask_s: float = 0.0
    wait_s: float = 0.0
    consume_s: float = 0.0

    def reset(self) -> None:
        self.steps = self.rows = 0
        self.mask_s = self.wait_s = self.consume_s = 0.0


def compute_masks(jobs: list[tuple[GrammarMatcher, bool]]) -> MaskBatch:
    """Allowed-token masks for ``(matcher, drop_eos)`` jobs; never raises (errors go per row).

    `drop_eos` (the request's ``ignore_eos``) clears EOS from a mask unless it is the only
    allowed token. A stopped matcher yields ``stopped=True`` and no mask; a matcher in error,
    a failing call or an empty mask yields ``error``.
    """
    t0 = time.perf_counter()
    out = [RowMask() for _ in jobs]
    if not jobs:
        return MaskBatch(out, 0.0)
    vocab = jobs[0][0].vocab_size
    bm = np.zeros((len(jobs), (vocab + 31) // 32), dtype=np.int32)
    live: list[int] = []
    for i, (m, _) in enumerate(jobs):
        try:
            if m.is_error():
                out[i].error = m.error or "the grammar matcher is in an error state"
            elif m.is_stopped():
                out[i].stopped = True
            elif m.vocab_size != vocab:
                out[i].error = "grammars of different tokenizers in one batch"
            else:
                m.fill_bitmask(bm, i)
                if m.is_error():
                    out[i].error = m.error or "computing the token mask failed"
                else:
                    live.append(i)
        except Exception as e:  # isolate one bad matcher from the rest of the batch
            out[i].error = f"{type(e).__name__}: {e}"
    if live:
        bits = unpack_bitmask(bm, vocab)
        for i in live:
            m, drop_eos = jobs[i]
            row = bits[i]
            try:
                m.fix_added_tokens(row)
                m.fix_forced_boundary(row)
            except Exception as e:
                out[i].error = f"{type(e).__name__}: {e}"
                continue
            if drop_eos:
                eos = [t for t in m.grammar.tokenizer.eos_token_ids if t < vocab]
                saved = row[eos].copy()
                row[eos] = 0
                if not row.any():
                    row[eos] = saved
            if not row.any():
                if m.is_accepting():
                    out[i].stopped = True
                else:
                    out[i].error = "no token can continue the grammar"
                continue
            out[i].allowed = torch.from_numpy(row.view(np.bool_))
    return MaskBatch(out, time.perf_counter() - t0)


class MaskWorker:
    """One background thread computing a step's masks while the engine thread runs the forward."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, jobs: list[tuple[GrammarMatcher, bool]]) -> Future[MaskBatch]:
        """Start `compute_masks(jobs)`; join with ``.result()`` before touching the matchers again."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentkit-grammar")
        return self._pool.submit(compute_masks, jobs)

    def shutdown(self) -> None:
        """Stop the thread (idempotent); a later `submit` starts a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
