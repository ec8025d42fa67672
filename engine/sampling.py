"""Token sampler of the inference engine: one call per decode step over a batch of logit rows.

Scope: request sampling parameters (validation, generation_config defaults) and the per-step
pipeline of reference §1.9: allowed-token mask -> DRY -> frequency/presence/repetition penalties
-> logit bias (+ suppressed tokens) -> temperature + softmax -> top-k -> top-p -> min-p -> draw.
Works on CPU and CUDA tensors; each row draws with its own ``torch.Generator`` so a seeded row
gives the same tokens whatever else is in the batch. A call costs one host sync (plus one per CUDA
*tensor* history that DRY must read or that needs out-of-range filtering; pass lists to avoid it).

Non-goals: stop strings, EOS/max_tokens handling and grammars (the runner owns them; grammars
only reach here as ``SampleRow.allowed_token_mask``), speculative decoding, beam search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch

DRY_DEFAULT_BASE, DRY_DEFAULT_ALLOWED_LENGTH, DRY_MAX_MATCH = 1.75, 2, 50
DRY_DEFAULT_BREAKERS = ("\n", ":", '"', "*")  # applied by the runner via dry_breaker_ids
GREEDY_EPS, MAX_TOP_LOGPROBS = 1e-7, 20


def _t(data, dev, dtype=torch.float32) -> torch.Tensor:
    """Small host data -> device tensor without a stream sync (pageable H2D copies are staged)."""
    return torch.tensor(data, dtype=dtype).to(dev, non_blocking=True)


def _check_num(name: str, v, *, integer=False, lo=None, lo_open=False, hi=None) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} or None, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v!r}")


def _is_id(t) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and t >= 0


def _check_str_list(name: str, v) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(s, str) and s for s in v):
        raise ValueError(f"{name} must be a list of non-empty strings, got {v!r}")
    return list(v)


@dataclass(slots=True)
class SamplingParams:
    """Sampling parameters of one sequence (reference §1.6/§1.9); ``None`` means unset/off.

    ``top_k <= 0``, ``top_p``/``min_p`` outside (0, 1) and ``repetition_penalty == 1`` are "off".
    DRY is enabled iff ``dry_multiplier`` is set and > 0. ``top_logprobs`` defaults to 1 when
    ``logprobs`` is true. Call :meth:`with_defaults` before sampling to apply generation_config.
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: list[str] | None = None
    logit_bias: dict[int, float] | None = None
    max_tokens: int | None = None
    stop_seqs: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None
    seed: int | None = None
    suppress_tokens: list[int] | None = None

    def __post_init__(self) -> None:
        _check_num("temperature", self.temperature, lo=0)
        for name in ("top_p", "min_p", "presence_penalty", "frequency_penalty"):
            _check_num(name, getattr(self, name))
        for name in ("top_k", "seed"):
            _check_num(name, getattr(self, name), integer=True)
        _check_num("repetition_penalty", self.repetition_penalty, lo=0, lo_open=True)
        _check_num("dry_multiplier", self.dry_multiplier, lo=0)
        _check_num("dry_base", self.dry_base, lo=0, lo_open=True)
        _check_num("dry_allowed_length", self.dry_allowed_length, integer=True, lo=0)
        self.dry_sequence_breakers = _check_str_list("dry_sequence_breakers", self.dry_sequence_breakers)
        self.stop_seqs = _check_str_list("stop_seqs", self.stop_seqs) or []
        _check_num("max_tokens", self.max_tokens, integer=True, lo=1)
        for name in ("ignore_eos", "logprobs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.top_logprobs is None and self.logprobs:
            self.top_logprobs = 1
        _check_num("top_logprobs", self.top_logprobs, integer=True, lo=0, hi=MAX_TOP_LOGPROBS)
        bias = self.logit_bias
        if bias is not None and not (isinstance(bias, dict) and all(map(_is_id, bias))):
            raise ValueError(f"logit_bias must be a dict {{token_id (int >= 0): bias}}, got {bias!r}")
        for k, v in (bias or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
                raise ValueError(f"logit_bias[{k}] must be a finite number or -inf, got {v!r}")
        sup = self.suppress_tokens
        if sup is not None and not (isinstance(sup, (list, tuple)) and all(map(_is_id, sup))):
            raise ValueError(f"suppress_tokens must be a list of token ids (int >= 0), got {sup!r}")
        self.suppress_tokens = None if sup is None else list(sup)

    @property
    def is_greedy(self) -> bool:
        """True when the next token is the argmax (temperature unset or below 1e-7)."""
        return self.temperature is None or self.temperature < GREEDY_EPS

    @property
    def needs_history(self) -> bool:
        """True when an effective penalty or DRY needs the sequence's token history."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or (self.repetition_penalty is not None and self.repetition_penalty != 1.0)
            or self.dry_multiplier
        )

    def with_defaults(self, generation_config: dict | None) -> SamplingParams:
        """Copy with unset fields filled from a HF ``generation_config.json`` dict (§1.9).

        Fills temperature, top_k, top_p, min_p, repetition_penalty, ``max_new_tokens`` ->
        max_tokens and suppress_tokens. An explicit ``do_sample: false`` keeps an unset
        temperature unset (greedy); an absent ``do_sample`` does not.
        """
        gc = generation_config or {}
        keys = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "max_tokens": "max_new_tokens",
                "repetition_penalty": "repetition_penalty", "suppress_tokens": "suppress_tokens"}
        if gc.get("do_sample", True) is not False:
            keys["temperature"] = "temperature"
        updates = {f: gc[k] for f, k in keys.items() if getattr(self, f) is None and gc.get(k) is not None}
        return replace(self, **updates) if updates else self


@dataclass(slots=True)
class SampleRow:
    """One row of the batch: its params, token history (prompt included) and optional RNG/mask.

    ``token_ids`` may be a list or a 1-D integer tensor (a tensor on the logits' device avoids a
    host->device copy for penalties; DRY always works on a Python list). ``allowed_token_mask``
    must allow at least one token; entries past its length count as disallowed.
    """

    params: SamplingParams
    token_ids: Sequence[int]
    generator: torch.Generator | None = None
    dry_breakers: frozenset[int] = frozenset()
    allowed_token_mask: torch.Tensor | None = None


@dataclass(slots=True)
class SampleResult:
    """The chosen token, its logprob and (only when ``params.logprobs``) the top alternatives."""

    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]] | None


def make_generator(seed: int | None, device) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``, or None when ``seed`` is None."""
    if seed is None:
        return None
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    return gen


@lru_cache(maxsize=8)
def _breaker_ids(breakers: tuple[str, ...], token_strings: tuple[str, ...]) -> frozenset[int]:
    return frozenset(i for i, s in enumerate(token_strings) if any(b in s for b in breakers))


def dry_breaker_ids(breakers: Sequence[str], token_strings: Sequence[str]) -> frozenset[int]:
    """Token ids whose decoded text contains any breaker string (LRU-memoised, 8 entries)."""
    return _breaker_ids(tuple(breakers), tuple(token_strings))


def _dry_penalties(ids: Sequence[int], p: SamplingParams, breakers: frozenset[int]) -> dict[int, float]:
    """{candidate token: penalty} for DRY. A breaker ends a match and is never part of one: a
    breaker as the last token disables DRY for this step, and a breaker candidate is not penalised."""
    n = len(ids)
    if n < 2 or ids[-1] in breakers:
        return {}
    last = ids[-1]
    allowed = DRY_DEFAULT_ALLOWED_LENGTH if p.dry_allowed_length is None else p.dry_allowed_length
    base = DRY_DEFAULT_BASE if p.dry_base is None else p.dry_base
    best: dict[int, int] = {}
    for i in np.flatnonzero(np.asarray(ids[:-1]) == last).tolist():
        nxt = ids[i + 1]
        if nxt in breakers:
            continue
        m = 1
        while m < DRY_MAX_MATCH and m <= i:
            prev = ids[n - 1 - m]
            if ids[i - m] != prev or prev in breakers:
                break
            m += 1
        if m >= allowed and m > best.get(nxt, 0):
            best[nxt] = m
    return {t: p.dry_multiplier * base ** (m - allowed) for t, m in best.items()}


def _penalize_(x: torch.Tensor, row: SampleRow) -> torch.Tensor:
    """In place on a float32 row: DRY, then frequency/presence, then repetition (mistral.rs order)."""
    p, ids = row.params, row.token_ids
    if not p.needs_history or len(ids) == 0:
        return x
    vocab = x.shape[-1]
    if p.dry_multiplier:
        id_list = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        dry = {t: v for t, v in _dry_penalties(id_list, p, row.dry_breakers).items() if t < vocab}
        if dry:
            x.index_add_(0, _t(list(dry), x.device, torch.long), -_t(list(dry.values()), x.device))
    rep = p.repetition_penalty if p.repetition_penalty is not None else 1.0
    if not (p.presence_penalty or p.frequency_penalty or rep != 1.0):
        return x
    # O(len(history)) gathers/scatters, never a pass over the vocabulary; ids outside the logits
    # (padding hacks) are ignored. Filtering a CUDA tensor history costs a sync; lists are filtered here.
    if isinstance(ids, torch.Tensor):
        t = ids.to(x.device, torch.long)
        t = t[(t >= 0) & (t < vocab)]
    else:  # numpy is ~4x faster than torch.tensor() at converting a long Python list
        a = np.asarray(ids, dtype=np.int64)
        t = torch.from_numpy(a[(a >= 0) & (a < vocab)]).to(x.device, non_blocking=True)
    if p.frequency_penalty:  # duplicates accumulate: count * frequency_penalty
        x.index_add_(0, t, torch.full(t.shape, -float(p.frequency_penalty), device=x.device))
    if p.presence_penalty or rep != 1.0:  # duplicate ids write identical values
        v = x.index_select(0, t) - (p.presence_penalty or 0.0)  # (advanced indexing is ~30x slower)
        x.index_copy_(0, t, torch.where(v > 0, v / rep, v * rep) if rep != 1.0 else v)
    return x


def apply_penalties(logits_row: torch.Tensor, row: SampleRow) -> torch.Tensor:
    """DRY + frequency/presence/repetition penalties on a copy of one logits row (float32)."""
    return _penalize_(logits_row.to(torch.float32, copy=True), row)


def _process_(x: torch.Tensor, row: SampleRow) -> None:
    """In place on a float32 row: allowed-token mask, penalties, logit bias and suppress_tokens."""
    vocab, p = x.shape[-1], row.params
    mask = row.allowed_token_mask
    if mask is not None:
        mask = mask.to(x.device, torch.bool, non_blocking=True)[:vocab]
        x[mask.shape[0] :] = -math.inf
        x[: mask.shape[0]].masked_fill_(~mask, -math.inf)
    _penalize_(x, row)
    bias = dict(p.logit_bias or {})
    for t in p.suppress_tokens or ():
        bias[t] = -math.inf
    bias = {t: b for t, b in bias.items() if t < vocab}
    if bias:
        x.index_add_(0, _t(list(bias), x.device, torch.long), _t(list(bias.values()), x.device))


def _is_plain_greedy(row: SampleRow) -> bool:
    p = row.params
    plain = not (p.needs_history or p.logit_bias or p.suppress_tokens or p.logprobs)
    return p.is_greedy and plain and row.allowed_token_mask is None


def _uniform(gen: torch.Generator | None, dev) -> torch.Tensor:
    """One U[0, 1) draw from the row's own generator (global RNG when unseeded), on ``dev``."""
    if gen is None:
        return torch.rand(1, device=dev)
    return torch.rand(1, generator=gen, device=gen.device).to(dev, non_blocking=True)


def _draw(x: torch.Tensor, rows: Sequence[SampleRow]) -> torch.Tensor:
    """Sample one token per row of processed logits ``x`` [S, V]; returns long [S] on x.device.

    Filters become one probability threshold per row (tokens tied with it are kept). The draw is
    an inverse-CDF lookup in vocabulary order with one uniform from the row's own generator, so
    a row's token never depends on the other rows of the batch.
    """
    S, V = x.shape
    dev = x.device
    ps = [r.params for r in rows]
    temps = _t([[p.temperature] for p in ps], dev)
    probs = torch.softmax(x / temps, dim=-1)
    ks = [p.top_k if p.top_k is not None and 0 < p.top_k < V else 0 for p in ps]  # >= V: keeps all
    tps = [p.top_p if p.top_p is not None and 0 < p.top_p < 1 else 0.0 for p in ps]
    mps = [p.min_p if p.min_p is not None and 0 < p.min_p < 1 else 0.0 for p in ps]
    thr = torch.zeros(S, dtype=torch.float32, device=dev)
    if any(ks) or any(tps):
        # Sorted probabilities: only the top max(k) are needed unless a top-p row has no top-k.
        L = V if any(tp and not k for k, tp in zip(ks, tps)) else max(ks)
        sv = None
        if L == V and dev.type == "cpu" and V > 1024:  # a full CPU sort is ~10x slower than topk(1024):
            cand = torch.topk(probs, max(1024, *ks), dim=-1).values  # enough when it holds the top-p mass
            if bool((cand.sum(-1) >= _t(tps, dev)).all()):
                sv, L = cand, cand.shape[1]
        if sv is None:
            sv = torch.topk(probs, L, dim=-1).values if L < V else torch.sort(probs, -1, descending=True)[0]
        kl = _t([k or L for k in ks], dev, torch.long)
        inside = torch.arange(L, device=dev)[None, :] < kl[:, None]
        if any(ks):
            kth = sv.gather(1, (kl - 1)[:, None])[:, 0]
            thr = torch.where(_t([k > 0 for k in ks], dev, torch.bool), kth, thr)
        if any(tps):
            svm = sv * inside  # top-p over the top-k survivors, no renormalisation (mistral.rs)
            keep = ((torch.cumsum(svm, -1) - svm) < _t(tps, dev)[:, None]) & inside
            last = sv.gather(1, (keep.sum(-1) - 1).clamp(min=0)[:, None])[:, 0]
            thr = torch.where(_t([tp > 0 for tp in tps], dev, torch.bool), torch.maximum(thr, last), thr)
    if any(mps):
        thr = torch.maximum(thr, probs.amax(-1) * _t(mps, dev))
    kept = torch.where(probs >= thr[:, None], probs, torch.zeros((), device=dev))
    cdf = torch.cumsum(kept, dim=-1)
    total = cdf[:, -1:]
    u = torch.cat([_uniform(r.generator, dev) for r in rows])[:, None]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=V - 1)


def _masked_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """logsumexp of rows holding many -inf (token masks): ~3x faster than torch.logsumexp there on
    CPU (its exp(-inf) path is slow); terms below exp(-80) of the max are dropped (< 1e-30 relative)."""
    m = x.amax(-1, keepdim=True)
    return (m + (x - m).clamp_(min=-80.0).exp_().sum(-1, keepdim=True).log_())[:, 0]


def _logsumexp(x: torch.Tensor, rows: Sequence[SampleRow]) -> torch.Tensor:
    """Row-wise logsumexp; masked rows take the fast path, the others are exactly torch.logsumexp."""
    masked = [r.allowed_token_mask is not None for r in rows]
    if not any(masked):
        return torch.logsumexp(x, -1)
    if all(masked):
        return _masked_logsumexp(x)
    on = _t([i for i, m in enumerate(masked) if m], x.device, torch.long)
    off = _t([i for i, m in enumerate(masked) if not m], x.device, torch.long)
    lse = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    lse.index_copy_(0, off, torch.logsumexp(x.index_select(0, off), -1))
    return lse.index_copy_(0, on, _masked_logsumexp(x.index_select(0, on)))


def sample(logits: torch.Tensor, rows: Sequence[SampleRow]) -> list[SampleResult]:
    """Pick the next token of every row of ``logits`` [B, V] (any float dtype; float32 maths).

    Reported logprobs (the chosen token's and ``top_logprobs``) are ``log_softmax`` of the logits
    after mask, penalties and bias but *before* temperature and top-k/top-p/min-p truncation, so
    they describe the model's (penalised) distribution and do not depend on the sampler knobs.
    When every row is plain greedy this is one batched argmax; either way one host sync.
    """
    if logits.dim() != 2 or logits.shape[0] != len(rows):
        raise ValueError(f"logits must be [len(rows)={len(rows)}, vocab], got {tuple(logits.shape)}")
    B, V = logits.shape
    if all(_is_plain_greedy(r) for r in rows):
        x = logits.float()
        tokens = x.argmax(-1)
        lp = x.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(x, -1)
        packed = torch.stack([tokens.double(), lp.double()], 1).tolist()
        return [SampleResult(int(t), lp_, None) for t, lp_ in packed]
    x = logits.to(torch.float32, copy=True)
    for i, row in enumerate(rows):
        _process_(x[i], row)
    lse = _logsumexp(x, rows)
    greedy = [r.params.is_greedy for r in rows]
    if not any(greedy):
        tokens = _draw(x, rows)
    else:
        tokens = x.argmax(-1)
        if not all(greedy):
            idx = _t([i for i, g in enumerate(greedy) if not g], x.device, torch.long)
            tokens.index_copy_(0, idx, _draw(x.index_select(0, idx), [r for r, g in zip(rows, greedy) if not g]))
    cols = [tokens[:, None].double(), (x.gather(1, tokens[:, None]) - lse[:, None]).double()]
    n_top = min(max((r.params.top_logprobs or 0 for r in rows if r.params.logprobs), default=0), V)
    if n_top:
        tv, ti = torch.topk(x, n_top, dim=-1)
        cols += [ti.double(), (tv - lse[:, None]).double()]
    packed = torch.cat(cols, 1).tolist()
    out = []
    for row, vals in zip(rows, packed):
        n = min(row.params.top_logprobs or 0, n_top) if row.params.logprobs else -1
        top = [(int(vals[2 + j]), vals[2 + n_top + j]) for j in range(n)] if n >= 0 else None
        out.append(SampleResult(int(vals[0]), vals[1], top))
    return out
