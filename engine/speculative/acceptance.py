"""The speculative acceptance rule: which draft tokens a verify step keeps, and the token after them.

Scope: `accept_draft`, the one function every proposer's drafts go through. Its input is the k+1
target logit rows of one sequence (row i scores the position after the first i draft tokens) and
one `SampleRow` per row holding the request's own transforms for that position (penalty history
extended by the draft prefix, grammar mask, logit bias...). The rule (Leviathan et al. 2023;
mistral.rs `speculative/verifier.rs`, runner-api.md §3.4):

- greedy: keep draft tokens while each equals the argmax of its processed row; then emit that
  row's argmax (the correction, or the bonus token when all k were kept). Every emitted token is
  exactly what plain greedy decoding emits from the same logits.
- sampled: p is the distribution plain sampling draws from (after temperature, top-k, top-p,
  min-p), q the draft's (a point mass for deterministic drafts). Keep draft x with probability
  min(1, p(x)/q(x)); at the first rejection draw from normalize(max(0, p - q)) (p itself if that
  is empty) and stop; when all k are kept, draw a bonus token from the last row's p. The output
  distribution equals the target's. Uniforms come from the sequence's own generator.

Reported logprobs are those plain sampling reports for the emitted token at its position.

Non-goals: producing drafts, running the model, stop strings/EOS (the scheduler's `postprocess`
consumes the emitted tokens one by one and may end the sequence early).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agentkit.engine.params import SampleResult
from agentkit.engine.sampling import SampleRow, kept_probs, process_logits, sample

__all__ = ["Verdict", "accept_draft"]


@dataclass(slots=True)
class Verdict:
    """What one sequence's verify step produced: `results` (the accepted draft tokens, then the
    correction or bonus token; `num_accepted + 1` entries) and how many draft tokens were kept."""

    results: list[SampleResult]
    num_accepted: int


def accept_draft(logits: torch.Tensor, draft: Sequence[int], rows: Sequence[SampleRow],
                 draft_probs: torch.Tensor | None = None) -> Verdict:
    """Apply the acceptance rule to one sequence: `logits` [k+1, V], `draft` k token ids, `rows`
    k+1 sample rows (row i: the request's params, history + draft[:i], row i's grammar mask),
    `draft_probs` [k, V] the draft's distributions (None: deterministic draft, a point mass)."""
    k = len(draft)
    if logits.dim() != 2 or logits.shape[0] != k + 1 or len(rows) != k + 1:
        raise ValueError(f"accept_draft needs k+1={k + 1} logit rows and sample rows for {k} draft tokens, "
                         f"got logits {tuple(logits.shape)} and {len(rows)} rows")
    if draft_probs is not None and tuple(draft_probs.shape[:1]) != (k,):
        raise ValueError(f"draft_probs must be [{k}, vocab], got {tuple(draft_probs.shape)}")
    if all(r.params.is_greedy for r in rows):
        results = sample(logits, rows)
        m = 0
        while m < k and results[m].token == draft[m]:
            m += 1
        return Verdict(results[: m + 1], m)
    return _accept_sampled(logits, draft, rows, draft_probs)


def _accept_sampled(logits: torch.Tensor, draft: Sequence[int], rows: Sequence[SampleRow],
                    q: torch.Tensor | None) -> Verdict:
    k = len(draft)
    x, lse = process_logits(logits, rows)
    kept = kept_probs(x, rows)
    p = kept / kept.sum(-1, keepdim=True)
    gen = rows[0].generator
    vocab = p.shape[1]
    tokens: list[int] = []
    m = k
    for i, d in enumerate(draft):
        p_d = float(p[i, d]) if 0 <= d < vocab else 0.0
        q_d = 1.0 if q is None else float(q[i, d]) if 0 <= d < q.shape[1] else 0.0
        if q_d > 0.0 and _uniform(gen) * q_d < p_d:  # u < min(1, p/q), without dividing
            tokens.append(int(d))
            continue
        residual = p[i].clone()
        if q is None:
            if 0 <= d < vocab:
                residual[d] = 0.0
        else:
            n = min(vocab, q.shape[1])
            residual[:n] = (residual[:n] - q[i, :n].to(residual)).clamp_(min=0.0)
        if float(residual.sum()) <= 0.0:
            residual = p[i]
        tokens.append(_draw(residual, gen))
        m = i
        break
    else:
        tokens.append(_draw(p[k], gen))
    return Verdict(_results(x, lse, rows, tokens), m)


def _uniform(gen: torch.Generator | None) -> float:
    if gen is None:
        return float(torch.rand(1))
    return float(torch.rand(1, generator=gen, device=gen.device))


def _draw(weights: torch.Tensor, gen: torch.Generator | None) -> int:
    """Inverse-CDF draw from unnormalised `weights` [V] (as `sampling._draw` does)."""
    cdf = torch.cumsum(weights.to(torch.float64), 0)
    total = float(cdf[-1])
    target = min(_uniform(gen) * total, float(torch.nextafter(torch.tensor(total, dtype=torch.float64),
                                                              torch.tensor(0.0, dtype=torch.float64))))
    return min(int(torch.searchsorted(cdf, torch.tensor([target], dtype=torch.float64), right=True)[0]),
               weights.shape[0] - 1)


def _results(x: torch.Tensor, lse: torch.Tensor, rows: Sequence[SampleRow], tokens: list[int]) -> list[SampleResult]:
    """SampleResults as `sample` reports them: logprob (and top logprobs) of the processed row."""
    out = []
    for i, tok in enumerate(tokens):
        p = rows[i].params
        lp = float(x[i, tok] - lse[i])
        top = None
        if p.logprobs:
            n = min(p.top_logprobs or 0, x.shape[1])
            if n:
                tv, ti = torch.topk(x[i], n)
                top = [(int(t), float(v - lse[i])) for t, v in zip(ti.tolist(), tv.tolist())]
            else:
                top = []
        out.append(SampleResult(tok, lp, top))
    return out
