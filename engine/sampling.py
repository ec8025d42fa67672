"""Token sampler of the inference engine: one call per decode step over a batch of logit rows.

Scope: the per-step
pipeline of reference §1.9: allowed-token mask -> DRY -> frequency/presence/repetition penalties
-> logit bias (+ suppressed tokens) -> temperature + softmax -> top-k -> top-p -> min-p -> draw.
Works on CPU and CUDA tensors; each row draws with its own ``torch.Generator`` so a seeded row
gives the same tokens whatever else is in the batch. A call costs one host sync (plus one per CUDA
*tensor* history that DRY must read or that needs out-of-range filtering; pass lists to avoid it).

Non-goals: the parameter values themselves (`agentkit.engine.params`, re-exported here), stop strings, EOS/max_tokens handling and grammars (the runner owns them; grammars
only reach here as ``SampleRow.allowed_token_mask``), the speculative acceptance rule
(`agentkit.engine.speculative.acceptance`, which reuses `process_logits` and `kept_probs`), beam search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from agentkit.engine.params import (  # noqa: F401  (re-exported: the historical import path)
    DRY_DEFAULT_ALLOWED_LENGTH,
    DRY_DEFAULT_BASE,
    DRY_DEFAULT_BREAKERS,
    DRY_MAX_MATCH,
    GREEDY_EPS,
    MAX_TOP_LOGPROBS,
    SampleResult,
    SamplingParams,
)


def _t(data, dev, dtype=torch.float32) -> torch.Tensor:
    """Small host data -> device tensor without a stream sync (pageable H2D copies are staged)."""
    return torch.tensor(data, dtype=dtype).to(dev, non_blocking=True)


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
    kept = kept_probs(x, rows)
    cdf = torch.cumsum(kept, dim=-1)
    total = cdf[:, -1:]
    u = torch.cat([_uniform(r.generator, x.device) for r in rows])[:, None]
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp_(max=x.shape[1] - 1)


def kept_probs(x: torch.Tensor, rows: Sequence[SampleRow]) -> torch.Tensor:
    """The unnormalised distribution `_draw` samples from: softmax(x / temperature) with the tokens
    below each row's top-k / top-p / min-p threshold zeroed ([S, V] float32; speculative
    verification normalises it to get the target distribution)."""
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
    return torch.where(probs >= thr[:, None], probs, torch.zeros((), device=dev))


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


def process_logits(logits: torch.Tensor, rows: Sequence[SampleRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 copy of ``logits`` [B, V] with each row's mask, penalties and logit bias applied,
    and its row-wise logsumexp (reported logprobs are ``x - lse``)."""
    x = logits.to(torch.float32, copy=True)
    for i, row in enumerate(rows):
        _process_(x[i], row)
    return x, _logsumexp(x, rows)


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
    x, lse = process_logits(logits, rows)
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
