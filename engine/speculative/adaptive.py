"""Adaptive draft length: how many draft tokens each sequence gets in a step, from evidence.

Scope:
- `Acceptance`: one sequence's per-token acceptance rate, estimated from its verify steps (a
  truncated geometric: m accepted of k drafted is m successes and, when m < k, one failure) with
  exponentially decaying counts and a weak prior. Plain steps decay the evidence too, so a
  sequence that stopped speculating probes again later (the text may turn repetitive).
- `CostModel`: the measured wall time of a forward step by the number of decode rows it scores
  (calibrated when speculation is enabled, then updated online from every pure-decode step).
- `plan_lengths`: the draft lengths of one step. With per-token acceptance a, k drafts yield
  1 + a(1 - a^k)/(1 - a) tokens in expectation; a step feeding N rows costs t(N). Sequences are
  considered best-first and each gets the k that maximises expected tokens per second of the
  whole step, 0 when no k beats plain decoding. A full batch therefore backs off by itself: its
  t(N + k) / t(N) grows once the step is compute-bound.

Non-goals: proposing or verifying tokens.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = ["Acceptance", "CostModel", "expected_tokens", "plan_lengths"]

_PRIOR_ACCEPT = 1.0  # pseudo-counts of the prior: mean acceptance 1/3 (a new sequence starts cautious)
_PRIOR_REJECT = 2.0


def expected_tokens(rate: float, k: int) -> float:
    """Expected tokens a verify step emits with `k` drafts at per-token acceptance `rate`."""
    if k <= 0:
        return 1.0
    if rate >= 1.0:
        return float(k + 1)
    return 1.0 + rate * (1.0 - rate**k) / (1.0 - rate)


@dataclass(slots=True)
class Acceptance:
    """A sequence's acceptance evidence (decayed counts) and its running totals."""

    decay: float = 0.8
    idle_decay: float = 0.97
    accepted_w: float = 0.0
    rejected_w: float = 0.0
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    disabled: bool = False  # the proposer failed on this sequence: it decodes plainly from now on

    @property
    def rate(self) -> float:
        """Estimated per-token acceptance probability."""
        return (self.accepted_w + _PRIOR_ACCEPT) / (self.accepted_w + self.rejected_w + _PRIOR_ACCEPT + _PRIOR_REJECT)

    def observe(self, drafted: int, accepted: int) -> None:
        """A verify step kept `accepted` of `drafted` draft tokens."""
        self.accepted_w = self.accepted_w * self.decay + accepted
        self.rejected_w = self.rejected_w * self.decay + (1.0 if accepted < drafted else 0.0)
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1

    def idle(self) -> None:
        """A plain step (no draft): old evidence fades towards the prior."""
        self.accepted_w *= self.idle_decay
        self.rejected_w *= self.idle_decay


@dataclass
class CostModel:
    """Step time (seconds) by number of decode rows, as measured; linear in between and beyond."""

    alpha: float = 0.2  # weight of a new online sample
    points: dict[int, float] = field(default_factory=dict)
    _curve: tuple[list[int], list[float]] | None = field(default=None, repr=False, compare=False)

    def observe(self, rows: int, seconds: float) -> None:
        """Record a step that scored `rows` rows (decode tokens plus draft tokens) in `seconds`."""
        if rows <= 0 or seconds <= 0 or not math.isfinite(seconds):
            return
        key = _bucket(rows)
        old = self.points.get(key)
        self.set(key, seconds if old is None else (1 - self.alpha) * old + self.alpha * seconds)

    def set(self, rows: int, seconds: float) -> None:
        """Set the time of `rows` rows (calibration)."""
        self.points[rows] = seconds
        self._curve = None

    def _monotone(self) -> tuple[list[int], list[float]]:
        if self._curve is None or len(self._curve[0]) != len(self.points):
            keys = sorted(self.points)
            vals = [self.points[k] for k in keys]
            for i in range(1, len(vals)):  # noisy samples must not make more rows look cheaper
                vals[i] = max(vals[i], vals[i - 1])
            self._curve = (keys, vals)
        return self._curve

    @property
    def calibrated(self) -> bool:
        return len(self.points) >= 2

    def time(self, rows: int) -> float:
        """Estimated seconds of a step scoring `rows` rows (non-decreasing in `rows`)."""
        if not self.points:
            return 1.0 + 0.1 * (rows - 1)  # uncalibrated: a weak guess that extra rows cost 10% each
        keys, vals = self._monotone()
        if len(keys) == 1:
            return vals[0] * rows / keys[0] if rows > keys[0] else vals[0]
        i = bisect.bisect_left(keys, rows)
        if i < len(keys) and keys[i] == rows:
            return vals[i]
        lo = min(max(i - 1, 0), len(keys) - 2)
        x0, x1, y0, y1 = keys[lo], keys[lo + 1], vals[lo], vals[lo + 1]
        slope = max((y1 - y0) / (x1 - x0), 0.0)
        return max(y0 + slope * (rows - x0), vals[0] if rows >= keys[0] else 0.0, 1e-9)


def _bucket(rows: int) -> int:
    """Exact up to 16 rows, then powers of two (online samples of similar sizes pool together)."""
    return rows if rows <= 16 else 1 << (rows - 1).bit_length()


def plan_lengths(rates: list[float], caps: list[int], base_rows: int, cost: CostModel,
                 draft_token_s: float = 0.0, min_gain: float = 1.1) -> list[int]:
    """Draft lengths for the sequences that can speculate this step.

    `rates[i]` is sequence i's acceptance estimate, `caps[i]` the most drafts it may get (proposer,
    max_tokens, token budget), `base_rows` the rows the step scores without drafts (every decode),
    `draft_token_s` what proposing one token costs (a draft model's forward; ~0 for n-gram lookup).
    A sequence gets k > 0 only if the whole step's expected tokens per second rise by `min_gain`.
    """
    ks = [0] * len(rates)
    rows = base_rows
    drafted = 0
    tokens = float(base_rows)
    t_now = cost.time(rows)
    for i in sorted(range(len(rates)), key=lambda j: -rates[j]):
        best_k, best_tput = 0, tokens / t_now
        for k in range(1, caps[i] + 1):
            t = cost.time(rows + k) + (drafted + k) * draft_token_s
            tput = (tokens + expected_tokens(rates[i], k) - 1.0) / t
            if tput > best_tput * (min_gain if best_k == 0 else 1.0):
                best_k, best_tput = k, tput
        if best_k:
            ks[i] = best_k
            rows += best_k
            drafted += best_k
            tokens += expected_tokens(rates[i], best_k) - 1.0
            t_now = cost.time(rows) + drafted * draft_token_s
    return ks
