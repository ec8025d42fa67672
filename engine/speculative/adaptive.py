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
- `with_probes` (`ProbePolicy`): the evidence the planner needs keeps coming: a minimum number
  of probes per sequence, periodic re-probes when off, and growth after a draft kept whole.

Non-goals: proposing or verifying tokens.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Acceptance", "CostModel", "ProbePolicy", "expected_tokens", "plan_lengths", "with_probes"]

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
    plain_run: int = 0  # plain steps since the last verify step
    last_k: int = 0  # drafts of the last verify step
    last_full: bool = False  # the last verify step kept every draft

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
        self.plain_run = 0
        self.last_k, self.last_full = drafted, accepted >= drafted

    def idle(self) -> None:
        """A plain step (no draft): old evidence fades towards the prior."""
        self.accepted_w *= self.idle_decay
        self.rejected_w *= self.idle_decay
        self.plain_run += 1


@dataclass
class CostModel:
    """Step time (seconds) by number of decode rows; linear in between and beyond.

    Each bucket keeps its last `window` samples and is estimated by their lower quartile: a
    machine shared with other work only ever makes a step slower, so a burst of slow samples
    (another process, a page fault) neither makes drafting look expensive nor switches it off."""

    window: int = 8
    points: dict[int, float] = field(default_factory=dict)  # the current estimate of each bucket
    _samples: dict[int, deque[float]] = field(default_factory=dict, repr=False, compare=False)
    _curve: tuple[list[int], list[float]] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rows, seconds in list(self.points.items()):
            self._samples[rows] = deque([seconds], maxlen=self.window)

    def observe(self, rows: int, seconds: float) -> None:
        """Record a step that scored `rows` rows (decode tokens plus draft tokens) in `seconds`."""
        if rows <= 0 or seconds <= 0 or not math.isfinite(seconds):
            return
        key = _bucket(rows)
        window = self._samples.setdefault(key, deque(maxlen=self.window))
        window.append(seconds)
        self.points[key] = sorted(window)[(len(window) - 1) // 4]
        self._curve = None

    def set(self, rows: int, seconds: float) -> None:
        """Replace what is known of `rows` rows by one sample (tests, a fixed model)."""
        self._samples.pop(_bucket(rows), None)
        self.observe(rows, seconds)

    def samples(self, rows: int) -> int:
        """How many samples the estimate of `rows` rows rests on."""
        return len(self._samples.get(_bucket(rows), ()))

    def _monotone(self) -> tuple[list[int], list[float]]:
        if self._curve is None:
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


@dataclass(frozen=True)
class ProbePolicy:
    """Evidence-gathering rules on top of `plan_lengths`, so that timing noise cannot switch
    speculation off for good: a sequence verifies `min_probes` drafts before the cost model may
    leave it plain, a plain sequence probes again every `reprobe_every` plain steps (both with
    `probe_k` drafts), and a draft that was kept whole is followed at once by one a token longer
    (whole drafts never lose to plain decoding; the longer steps get re-measured). Only for steps
    of at most `max_rows` rows without drafts: a full batch is left to the planner, which backs off."""

    min_probes: int = 3
    reprobe_every: int = 16
    probe_k: int = 1
    max_rows: int = 8


def with_probes(ks: list[int], accs: list[Acceptance], caps: list[int], policy: ProbePolicy = ProbePolicy(),
                base_rows: int = 1) -> list[int]:
    """`plan_lengths`' choice `ks` for a step of `base_rows` rows without drafts, adjusted by
    `policy` (each k stays within its cap)."""
    if base_rows > policy.max_rows:
        return list(ks)
    out = []
    for k, a, cap in zip(ks, accs, caps):
        if a.last_full and a.plain_run == 0 and k <= a.last_k:
            k = a.last_k + 1
        elif k == 0 and (a.steps < policy.min_probes or a.plain_run >= policy.reprobe_every):
            k = policy.probe_k
        out.append(max(0, min(k, cap)))
    return out
