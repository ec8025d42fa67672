"""The acceptance rule: greedy keeps exactly the argmax prefix; sampled output follows the target
distribution whatever the draft distribution (chi-square over many draws)."""

from __future__ import annotations

import math

import pytest
import torch

from agentkit.engine.params import SamplingParams
from agentkit.engine.sampling import SampleRow, kept_probs, process_logits, sample
from agentkit.engine.speculative.acceptance import accept_draft


def rows(params: SamplingParams, history: list[int], draft: list[int], gen=None) -> list[SampleRow]:
    return [SampleRow(params=params, token_ids=history + draft[:i], generator=gen) for i in range(len(draft) + 1)]


def test_greedy_keeps_the_argmax_prefix_then_the_targets_token():
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0], [3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 9.0], [1.0, 2.0, 3.0, 4.0]])
    p = SamplingParams(temperature=0.0)
    v = accept_draft(logits, [1, 0, 2], rows(p, [0], [1, 0, 2]))
    assert v.num_accepted == 2 and [r.token for r in v.results] == [1, 0, 3]
    v = accept_draft(logits, [1, 0, 3], rows(p, [0], [1, 0, 3]))
    assert v.num_accepted == 3 and [r.token for r in v.results] == [1, 0, 3, 3]  # bonus from the last row
    v = accept_draft(logits, [2, 0, 3], rows(p, [0], [2, 0, 3]))
    assert v.num_accepted == 0 and [r.token for r in v.results] == [1]


def test_greedy_applies_each_positions_own_penalties():
    # Row 1 sees the draft token 1 in its history: a repetition penalty moves its argmax off token 1.
    logits = torch.tensor([[0.0, 5.0, 4.0], [0.0, 5.0, 4.5]])
    p = SamplingParams(temperature=0.0, repetition_penalty=1.5)
    v = accept_draft(logits, [1], rows(p, [0], [1]))
    plain = sample(logits[1:], [SampleRow(params=p, token_ids=[0, 1])])[0]
    assert v.num_accepted == 1 and v.results[1].token == plain.token == 2
    assert v.results[1].logprob == pytest.approx(plain.logprob)


def test_bad_shapes_are_value_errors():
    p = SamplingParams(temperature=0.0)
    with pytest.raises(ValueError, match="k\\+1=3"):
        accept_draft(torch.zeros(2, 4), [1, 2], rows(p, [0], [1, 2]))
    with pytest.raises(ValueError, match="draft_probs"):
        accept_draft(torch.zeros(2, 4), [1], rows(p, [0], [1]), draft_probs=torch.ones(3, 4) / 4)


def _chi2_limit(df: int, z: float = 3.29) -> float:
    """Wilson-Hilferty upper quantile of chi-square(df) at ~0.05% (z = 3.29)."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    n = counts.sum()
    expected = probs * n
    live = expected > 5
    stat = float((((counts - expected) ** 2) / expected)[live].sum())
    return stat, int(live.sum()) - 1


def _target(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    row = [SampleRow(params=params, token_ids=[0])]
    x, _ = process_logits(logits[None], row)
    kept = kept_probs(x, row)[0]
    return kept / kept.sum()


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.7, top_k=5, top_p=0.9),
], ids=["plain", "top-k-top-p"])
@pytest.mark.parametrize("draft_kind", ["wrong_distribution", "point_mass"])
def test_sampled_output_follows_the_target_distribution(params, draft_kind):
    """First emitted token (accepted draft or residual sample) and the second (bonus or next)
    follow p exactly although the drafts come from a deliberately wrong q."""
    torch.manual_seed(0)
    V, N = 8, 6000
    logits = torch.randn(3, V) * 1.5
    q = torch.softmax(torch.randn(2, V) * 2.0, -1)  # unrelated to p
    gen = torch.Generator().manual_seed(1)
    first = torch.zeros(V)
    second_after = {t: torch.zeros(V) for t in range(V)}
    for _ in range(N):
        if draft_kind == "point_mass":
            draft = [int(torch.randint(V, (1,), generator=gen)), int(torch.randint(V, (1,), generator=gen))]
            probs = None
        else:
            draft = [int(torch.multinomial(q[i], 1, generator=gen)) for i in range(2)]
            probs = q
        v = accept_draft(logits, draft, rows(params, [0], draft, gen), probs)
        toks = [r.token for r in v.results]
        first[toks[0]] += 1
        if v.num_accepted >= 1:  # the second token was drawn at row 1, given the first
            second_after[toks[0]][toks[1]] += 1
    p0 = _target(logits[0], params)
    stat, df = _chi2(first, p0)
    assert stat < _chi2_limit(df), (stat, df, first, p0 * N)
    p1 = _target(logits[1], params)
    best = max(second_after, key=lambda t: second_after[t].sum())
    stat, df = _chi2(second_after[best], p1)
    assert df >= 1 and stat < _chi2_limit(df), (stat, df)


def test_the_chi_square_sees_a_wrong_rule():
    """The test's power: the classic mistake (on rejection, sample from p instead of the residual
    max(0, p - q)) biases the output, and the same statistic flags it."""
    torch.manual_seed(0)
    V, N = 8, 6000
    logits = torch.randn(2, V) * 1.5
    q = torch.softmax(torch.randn(V) * 2.0, -1)
    p = _target(logits[0], SamplingParams(temperature=1.0))
    gen = torch.Generator().manual_seed(1)
    first = torch.zeros(V)
    for _ in range(N):
        d = int(torch.multinomial(q, 1, generator=gen))
        if float(torch.rand(1, generator=gen)) < min(1.0, float(p[d] / q[d])):
            first[d] += 1
        else:
            first[int(torch.multinomial(p, 1, generator=gen))] += 1
    stat, df = _chi2(first, p)
    assert stat > _chi2_limit(df)
