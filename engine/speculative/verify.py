"""The engine side of speculative decoding: attach drafts to a step's decode items, verify them.

Scope: `Speculation`, owned by an `Engine` whose model runner is the native one. Each step:
1. `draft(items)` (after scheduling, before the forward): for every decode item that may
   speculate, pick its draft length (`adaptive.plan_lengths`, then `with_probes`, from its acceptance estimate, the
   measured step costs and the token budget), ask the proposer for that many tokens and reserve
   KV slots for them (`BlockManager.reserve`; no room means no draft, never a preemption). The
   draft rides on the item (`BatchItem.draft`): the runner scores the decode token and every draft
   token as decode rows in the same forward, so each row's logits are bit-identical to those of
   a plain decode step at that position.
2. `verify(items, logits, seqs)` (after the forward): each drafted sequence's k+1 rows go through
   `acceptance.accept_draft` with the request's own sampling transforms for each position; the
   emitted tokens are appended one by one by the scheduler's `postprocess` (EOS, stop strings,
   max_tokens end the sequence as usual). Rollback: the sequence's computed length covers only
   the accepted drafts, blocks past its newest token go back to the pool (`BlockManager.truncate`),
   and only computed blocks are ever hashed, so the prefix cache never holds a rejected token.
   The other rows are handed back to the engine's plain sampling path.

Failures: `draft` never raises. A proposer that raises (or returns something that is not a
draft) leaves its sequence plain from then on, and the engine plain after `max_proposer_errors`
failures or one not tied to a sequence; the first failure is logged with its traceback. Outputs
are those of plain decoding either way. A grammar matcher that cannot be rolled back after a
draft walk fails its request only (in `failed` after the step).

Counters: per sequence (`Sequence.spec`, an `Acceptance`: drafted, accepted, verify steps) and
per engine (`SpecStats`).

Constrained sequences: the draft is walked through the grammar matcher first (cut where the
grammar refuses a token or completes), each verify row gets the mask of its position, the matcher
is rolled back, and after acceptance the emitted tokens are consumed one by one (a completed
grammar ends the sequence with "stop", as on the plain path).

Non-goals: the transformers fallback runner (it does not speculate); proposing tokens (the
proposer), the acceptance rule itself (`acceptance`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from agentkit.engine.block_manager import BlockManager
from agentkit.engine.grammar_masks import compute_masks
from agentkit.engine.model_runner import BatchItem, ModelRunner
from agentkit.engine.params import SamplingParams
from agentkit.engine.sampling import SampleRow
from agentkit.engine.sequence import EngineRequest, Sequence
from agentkit.engine.speculative.acceptance import accept_draft
from agentkit.engine.speculative.adaptive import Acceptance, CostModel, ProbePolicy, plan_lengths, with_probes
from agentkit.engine.speculative.protocol import Draft, DraftContext, DraftProposer

log = logging.getLogger("agentkit.engine")

__all__ = ["SpecStats", "Speculation"]


class _MatcherLost(RuntimeError):
    """A grammar matcher could not be rolled back after walking a draft (its state is lost)."""

MakeRow = Callable[[Sequence, list[int]], SampleRow]
Postprocess = Callable[[list[Sequence], list[Any], float], None]


@dataclass(slots=True)
class SpecStats:
    """Engine totals: verify steps, draft tokens proposed and accepted, tokens emitted by verify
    steps, and decode steps of speculating-capable sequences that ran without a draft."""

    verify_steps: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    plain_steps: int = 0
    proposer_errors: int = 0

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verify step (accepted drafts + the correction/bonus token)."""
        return self.emitted / self.verify_steps if self.verify_steps else 0.0


class Speculation:
    """Drafts and verifies for one engine; see the module docstring for the step protocol."""

    def __init__(self, proposer: DraftProposer, runner: ModelRunner, blocks: BlockManager, *,
                 max_batch_tokens: int, max_seq_len: int, make_row: MakeRow, postprocess: Postprocess,
                 cost: CostModel | None = None) -> None:
        max_draft = getattr(proposer, "max_draft", None)
        if isinstance(max_draft, bool) or not isinstance(max_draft, int) or max_draft < 1:
            raise TypeError(f"a DraftProposer needs an int max_draft >= 1, {type(proposer).__name__} has {max_draft!r}")
        self.proposer = proposer
        self.runner = runner
        self.blocks = blocks
        self.max_batch_tokens = max_batch_tokens
        self.max_seq_len = max_seq_len
        self.make_row = make_row
        self.postprocess = postprocess
        self.cost = cost or CostModel()
        self.probes = ProbePolicy()
        self.stats = SpecStats()
        self._probs: dict[int, torch.Tensor] = {}
        self._masks: dict[int, list[torch.Tensor]] = {}  # constrained sequences: a mask per verify row
        self._t0 = 0.0
        self._rows = 0
        self._timed = False
        self._drafted = False
        self.failed: dict[str, tuple[EngineRequest, str]] = {}  # request_id -> error, from the last verify
        self._lost: dict[str, tuple[EngineRequest, str]] = {}  # grammar state lost while drafting
        self.disabled = False  # set when the proposer keeps failing: every step is plain
        self.max_proposer_errors = 3

    # ---- before the forward --------------------------------------------------------------------
    def draft(self, items: list[BatchItem]) -> None:
        """Attach drafts to the decode items that should speculate this step. Never raises: a
        failing proposer (or planner) leaves the step plain and switches speculation off for the
        sequence, or for the whole engine when the failure is not tied to one sequence."""
        self._drafted = False
        self._timed = False
        self._rows = sum(it.count for it in items)
        if not self.disabled:
            try:
                self._draft(items)
            except Exception:
                self._abandon(items)
                self._proposer_failed(None)
        self._t0 = time.perf_counter()

    def _draft(self, items: list[BatchItem]) -> None:
        used = self._rows
        cands: list[BatchItem] = []
        caps: list[int] = []
        constrained = False
        max_draft = int(self.proposer.max_draft)
        for it in items:
            if it.count != 1 or not it.need_logits:
                continue
            s = it.seq
            if s.matcher is not None:
                constrained = True
                if s.matcher.is_stopped() or s.matcher.is_error():
                    continue
            if s.spec is None:
                s.spec = Acceptance()
            if s.spec.disabled or (s.params.seed is not None and not s.params.is_greedy):
                continue  # seeded sampling: k follows measured timings, drafting would be irreproducible
            cap = min(max_draft, s.max_tokens - s.num_generated - 1, self.max_seq_len - s.num_tokens - 1)
            if cap > 0:
                cands.append(it)
                caps.append(cap)
        self._timed = not constrained and len(items) == sum(1 for it in items if it.count == 1)
        if cands:
            ks = plan_lengths([it.seq.spec.rate for it in cands], caps, used, self.cost,
                              draft_token_s=float(getattr(self.proposer, "token_cost_s", 0.0)))
            ks = with_probes(ks, [it.seq.spec for it in cands], caps, self.probes, base_rows=used)
            budget = self.max_batch_tokens - used
            for it, k in zip(cands, ks):
                k = min(k, budget)
                n = self._attach(it, k) if k > 0 else 0
                if n == 0:
                    it.seq.spec.idle()
                    self.stats.plain_steps += 1
                budget -= n
                self._rows += n

    def _abandon(self, items: list[BatchItem]) -> None:
        """Drop every draft of this step (after a failure part-way through drafting)."""
        for it in items:
            if it.draft:
                it.draft = ()
                self.blocks.truncate(it.seq, it.seq.num_tokens)
        self._probs.clear()
        self._masks.clear()
        self._drafted = False
        self._rows = sum(it.count for it in items)

    def _proposer_failed(self, s: Sequence | None) -> None:
        """Log the first failure (with its traceback), later ones at debug level; switch
        speculation off for `s`, and for the engine when `s` is None or failures keep coming."""
        self.stats.proposer_errors += 1
        name = type(self.proposer).__name__
        if self.stats.proposer_errors == 1:
            log.exception("draft proposer %s failed; decoding without drafts (outputs are unchanged)", name)
        else:
            log.debug("draft proposer %s failed again", name, exc_info=True)
        if s is not None and s.spec is not None:
            s.spec.disabled = True
        if s is None or self.stats.proposer_errors >= self.max_proposer_errors:
            if not self.disabled:
                log.warning("speculative decoding is off for this model: draft proposer %s failed %d time(s)",
                            name, self.stats.proposer_errors)
            self.disabled = True

    def _propose(self, s: Sequence, k: int) -> tuple[list[int], torch.Tensor | None]:
        """The proposer's draft for `s`, checked: token ids cut at the first one outside the
        vocabulary; a sampling drafter's `probs` must be finite, non-negative [n, vocab]."""
        got = self.proposer.propose(DraftContext(s.seq_id, s.token_ids, s.num_prompt), k)
        draft = got if isinstance(got, Draft) else Draft(list(got))
        vocab = self.runner.vocab_size
        tokens: list[int] = []
        for t in list(draft.tokens)[:k]:
            t = int(t)
            if not 0 <= t < vocab:
                break
            tokens.append(t)
        probs = draft.probs
        if probs is not None and tokens:
            probs = probs[: len(tokens)]
            if probs.dim() != 2 or probs.shape[1] != vocab or not bool(torch.isfinite(probs).all()) \
                    or bool((probs < 0).any()):
                raise ValueError(f"Draft.probs must be finite and non-negative, [n, vocab={vocab}]; "
                                 f"got {tuple(probs.shape)}")
        return tokens, probs

    def _attach(self, it: BatchItem, k: int) -> int:
        s = it.seq
        try:
            tokens, probs = self._propose(s, k)
        except Exception:  # a broken proposer costs speed, never the request
            self._proposer_failed(s)
            return 0
        if tokens and s.matcher is not None:
            try:
                tokens = self._grammar_masks(s, tokens)
            except _MatcherLost as exc:  # the request cannot continue exactly: it fails after the step
                self._lost[s.request.request_id] = (s.request, str(exc))
                s.spec.disabled = True
                tokens = []
            except Exception:
                log.exception("walking a draft through the grammar failed; decoding without drafts")
                s.spec.disabled = True
                tokens = []
        if not tokens or not self.blocks.reserve(s, s.num_tokens + len(tokens)):
            self._masks.pop(s.seq_id, None)
            return 0
        it.draft = tuple(tokens)
        if probs is not None:
            self._probs[s.seq_id] = probs
        self._drafted = True
        return len(tokens)

    def _grammar_masks(self, s: Sequence, tokens: list[int]) -> list[int]:
        """Walk the draft through the sequence's grammar matcher: keep the prefix the grammar allows
        (stopping where it completes), store the allowed-token mask of every verify row, and roll
        the matcher back to where it was."""
        m = s.matcher
        masks: list[torch.Tensor] = []
        consumed = ok = 0
        try:
            for t in [*tokens, None]:
                row = compute_masks([(m, s.params.ignore_eos)]).rows[0]
                if row.allowed is None:  # grammar complete or in error here: no row past this one
                    break
                masks.append(row.allowed)
                if t is None or not (t < row.allowed.shape[0] and bool(row.allowed[t])):
                    break
                consumed += 1  # counted before: a refused consume still takes a rollback step
                if not m.consume(t):
                    break
                ok += 1
        finally:
            if consumed and not m.rollback(consumed):
                raise _MatcherLost(f"the grammar matcher could not roll back {consumed} draft tokens")
        keep = min(ok, len(masks) - 1)
        if keep <= 0:
            return []
        self._masks[s.seq_id] = masks[: keep + 1]
        return tokens[:keep]

    # ---- after the forward ---------------------------------------------------------------------
    def verify(self, items: list[BatchItem], logits: torch.Tensor,
               seqs: list[Sequence]) -> tuple[torch.Tensor, list[Sequence], list[Sequence]]:
        """Verify every drafted item; return the logits and sequences left for plain sampling, and
        the verified sequences (tokens appended, to publish). Requests whose verification failed
        are in `self.failed` until the next call."""
        if self._timed:
            self.cost.observe(self._rows, time.perf_counter() - self._t0)
        self.failed, self._lost = self._lost, {}
        if not self._drafted:
            return logits, seqs, []
        keep_rows: list[int] = []
        keep: list[Sequence] = []
        verified: list[Sequence] = []
        off = 0
        for it in items:
            if not it.need_logits:
                continue
            if it.draft:
                n = len(it.draft) + 1
                try:
                    self._verify_one(it, logits[off : off + n])
                    verified.append(it.seq)
                except Exception as exc:  # fails this request only (the engine ends it)
                    req = it.seq.request
                    self.failed.setdefault(req.request_id, (req, f"{type(exc).__name__}: {exc}"))
                it.draft = ()
                off += n
            else:
                keep_rows.append(off)
                keep.append(it.seq)
                off += 1
        if len(keep_rows) != logits.shape[0]:
            logits = logits[keep_rows]
        return logits, keep, verified

    def _verify_one(self, it: BatchItem, logits: torch.Tensor) -> None:
        s = it.seq
        draft = list(it.draft)
        probs = self._probs.pop(s.seq_id, None)
        masks = self._masks.pop(s.seq_id, None)
        history = list(s.token_ids)
        rows = [self.make_row(s, history + draft[:i]) for i in range(len(draft) + 1)]
        if masks is not None:
            for row, mask in zip(rows, masks):
                row.allowed_token_mask = mask
        verdict = accept_draft(logits, draft, rows, probs)
        n_before = s.num_tokens
        now = time.perf_counter()
        emitted = 0
        for res in verdict.results:
            self.postprocess([s], [res], now)
            emitted += 1
            if s.matcher is not None:
                if not s.matcher.consume(res.token):
                    raise RuntimeError(f"constrained decoding failed: token {res.token} does not satisfy the "
                                       f"grammar ({s.matcher.error})")
                if s.matcher.is_stopped() and s.stop_sequence is None:
                    s.finish_reason = "stop"  # the grammar is complete (as GrammarStep.advance decides)
            if s.finish_reason is not None:
                break
        s.num_computed = min(n_before + verdict.num_accepted, s.num_tokens - 1)
        self.blocks.register_computed(s)
        self.blocks.truncate(s, s.num_tokens)
        s.spec.observe(len(draft), verdict.num_accepted)
        st = self.stats
        st.verify_steps += 1
        st.drafted += len(draft)
        st.accepted += verdict.num_accepted
        st.emitted += emitted

    # ---- lifecycle -----------------------------------------------------------------------------
    def release(self, s: Sequence) -> None:
        """The sequence ended (finished, cancelled, failed): tell the proposer, drop its state."""
        self._probs.pop(s.seq_id, None)
        if s.spec is None:
            return
        try:
            self.proposer.finished(DraftContext(s.seq_id, s.token_ids, s.num_prompt))
        except Exception:
            log.exception("draft proposer %s failed in finished()", type(self.proposer).__name__)

    def calibrate(self, sizes: tuple[int, ...] = (1, 2, 4, 8, 12), context: int = 192, reps: int = 3) -> None:
        """Measure the step time of 1..max(sizes) decode rows on a scratch sequence (`reps` samples each)."""
        sizes = tuple(n for n in sizes if n <= self.max_batch_tokens)
        vocab = self.runner.vocab_size
        ctx = min(context, max(self.max_seq_len - max(sizes) - 1, 2))
        ids = [(7 + 31 * i) % vocab for i in range(ctx)]
        seq = Sequence(request=EngineRequest("speculation-calibration", ids, SamplingParams()), index=0,
                       token_ids=ids, num_prompt=len(ids), max_tokens=1)
        if not self.blocks.can_allocate(seq, reserve=self.blocks.blocks_needed(max(sizes)), fresh_only=True):
            return
        self.blocks.allocate(seq, fresh_only=True)
        try:
            if not self.blocks.reserve(seq, ctx + max(sizes)):
                return
            self.runner.execute([BatchItem(seq, 0, ctx - 1, False)])
            seq.num_computed = ctx - 1
            for _ in range(reps):
                for n in sizes:
                    item = BatchItem(seq, ctx - 1, 1, True, tuple(ids[1:n]))
                    t0 = time.perf_counter()
                    self.runner.execute([item])
                    self.cost.observe(n, time.perf_counter() - t0)
        finally:
            self.blocks.free_seq(seq, finished=False)
        log.debug("speculation cost model: %s", {n: round(t * 1e3, 2) for n, t in sorted(self.cost.points.items())})
