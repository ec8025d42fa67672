"""Tests for agentkit.engine.sampling: params validation/defaults, penalties, DRY, filters, draws."""

from __future__ import annotations

import math

import pytest
import torch

from agentkit.engine.sampling import (
    SampleRow,
    SamplingParams,
    apply_penalties,
    dry_breaker_ids,
    make_generator,
    sample,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def row(hist=(), seed=None, device="cpu", **kw) -> SampleRow:
    p = SamplingParams(seed=seed, **kw)
    return SampleRow(p, list(hist), make_generator(seed, device))


def tokens(logits, rows):
    return [r.token for r in sample(logits, rows)]


# ---------------------------------------------------------------- greedy


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_picks_argmax_with_logprob(device):
    torch.manual_seed(0)
    x = torch.randn(5, 50, device=device)
    res = sample(x, [row() for _ in range(5)])
    assert [r.token for r in res] == x.argmax(-1).tolist()
    lsm = torch.log_softmax(x, -1)
    for i, r in enumerate(res):
        assert r.logprob == pytest.approx(lsm[i, r.token].item(), abs=1e-5)
        assert r.top_logprobs is None


def test_batched_fast_path_equals_per_row_general_path():
    torch.manual_seed(1)
    x = torch.randn(8, 300, dtype=torch.bfloat16)
    fast = sample(x, [row() for _ in range(8)])
    for i in range(8):
        # logprobs=True forces the general path
        (slow,) = sample(x[i : i + 1], [row(logprobs=True)])
        assert slow.token == fast[i].token
        assert slow.logprob == pytest.approx(fast[i].logprob, abs=1e-6)


def test_zero_and_tiny_temperature_are_greedy():
    torch.manual_seed(2)
    x = torch.randn(3, 40)
    assert tokens(x, [row(temperature=0.0), row(temperature=1e-9), row()]) == x.argmax(-1).tolist()


def test_input_logits_not_modified():
    x = torch.randn(2, 10)
    before = x.clone()
    sample(x, [row([1, 2], presence_penalty=1.0), row(logit_bias={3: 5.0}, temperature=1.0, seed=1)])
    assert torch.equal(x, before)


# ---------------------------------------------------------------- seeded sampling


def _run_steps(x, rows, idx, steps=15):
    return [sample(x, rows)[idx].token for _ in range(steps)]


@pytest.mark.parametrize("device", DEVICES)
def test_seeded_sampling_reproducible_and_batch_independent(device):
    torch.manual_seed(3)
    x = torch.randn(4, 200, device=device) * 0.5
    kw = dict(temperature=0.9, top_p=0.95, top_k=100, min_p=0.01)
    alone = _run_steps(x[1:2], [row(seed=42, device=device, **kw)], 0)
    again = _run_steps(x[1:2], [row(seed=42, device=device, **kw)], 0)
    assert alone == again
    batch = [
        row(seed=7, device=device, temperature=1.3, top_k=5),
        row(seed=42, device=device, **kw),
        row(temperature=0.7, top_p=0.5),  # unseeded: global RNG
        row([1, 2, 3], device=device, presence_penalty=0.3),  # greedy
    ]
    assert _run_steps(x, batch, 1) == alone
    assert len(set(alone)) > 1  # it really samples


def test_different_seeds_differ_on_flat_distribution():
    x = torch.zeros(1, 1000)
    a = _run_steps(x, [row(seed=1, temperature=1.0)], 0, steps=10)
    b = _run_steps(x, [row(seed=2, temperature=1.0)], 0, steps=10)
    assert a != b
    assert len(set(a)) > 5


def test_make_generator():
    assert make_generator(None, "cpu") is None
    g1, g2 = make_generator(5, "cpu"), make_generator(5, torch.device("cpu"))
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
    assert make_generator(-1, "cpu") is not None  # negative seeds are folded into uint64


# ---------------------------------------------------------------- filters


def test_top_k_1_equals_greedy():
    torch.manual_seed(4)
    x = torch.randn(6, 100)
    rows = [row(seed=i, temperature=1.5, top_k=1) for i in range(6)]
    for _ in range(5):
        assert tokens(x, rows) == x.argmax(-1).tolist()


def test_top_k_keeps_only_k_best():
    torch.manual_seed(5)
    x = torch.randn(1, 64)
    top3 = set(x[0].topk(3).indices.tolist())
    seen = set(_run_steps(x, [row(seed=0, temperature=5.0, top_k=3)], 0, steps=200))
    assert seen == top3


def test_top_p_tiny_keeps_only_best():
    torch.manual_seed(6)
    x = torch.randn(1, 64) * 0.1  # nearly flat: without top-p many tokens would appear
    best = x.argmax(-1).item()
    assert set(_run_steps(x, [row(seed=0, temperature=1.0, top_p=1e-6)], 0, steps=100)) == {best}


def test_top_p_keeps_smallest_covering_set():
    # probs 0.5, 0.3, 0.15, 0.05: top_p=0.7 keeps {0, 1}; top_p=0.85 keeps {0, 1, 2}
    x = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert set(_run_steps(x, [row(seed=0, temperature=1.0, top_p=0.7)], 0, 300)) == {0, 1}
    assert set(_run_steps(x, [row(seed=0, temperature=1.0, top_p=0.85)], 0, 300)) == {0, 1, 2}


def test_top_p_large_vocab_exact_cutoff_and_batch_independent():
    # V > 1024 exercises the CPU shortcut (top 1024 candidates) and its full-sort fallback
    V = 5000
    steep, flat = -torch.arange(V) * 0.05, -torch.arange(V) * 1e-4
    for logits, top_p in ((steep, 0.9), (flat, 0.3)):
        probs = torch.softmax(logits, -1)
        n_keep = int(((torch.cumsum(probs, -1) - probs) < top_p).sum())
        drawn = _run_steps(logits[None], [row(seed=0, temperature=1.0, top_p=top_p)], 0, 300)
        assert max(drawn) < n_keep and len(set(drawn)) > 10
    assert n_keep > 1024 and max(drawn) > 1024  # the flat case needed the fallback
    alone = _run_steps(steep[None], [row(seed=3, temperature=1.0, top_p=0.9)], 0, 20)
    x = torch.stack([flat, steep])
    mixed = _run_steps(x, [row(seed=1, temperature=1.0, top_p=0.3), row(seed=3, temperature=1.0, top_p=0.9)], 1, 20)
    assert mixed == alone


def test_min_p_filters():
    x = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()  # min_p 0.2 -> threshold 0.1 drops token 3
    assert set(_run_steps(x, [row(seed=0, temperature=1.0, min_p=0.2)], 0, 400)) == {0, 1, 2}
    assert set(_run_steps(x, [row(seed=0, temperature=1.0)], 0, 400)) == {0, 1, 2, 3}


def test_empirical_distribution_matches_softmax():
    x = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    n = 4000
    g = make_generator(123, "cpu")
    rows = [SampleRow(SamplingParams(temperature=1.0), [], g) for _ in range(n)]
    toks = torch.tensor(tokens(x.expand(n, 4), rows))
    freq = torch.bincount(toks, minlength=4).float() / n
    expected = torch.softmax(x[0], -1)
    assert torch.allclose(freq, expected, atol=0.03), (freq, expected)


def test_temperature_sharpens_distribution():
    x = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    n = 2000
    g = make_generator(9, "cpu")
    rows = [SampleRow(SamplingParams(temperature=0.25), [], g) for _ in range(n)]
    freq = torch.bincount(torch.tensor(tokens(x.expand(n, 4), rows)), minlength=4).float() / n
    assert torch.allclose(freq, torch.softmax(x[0] / 0.25, -1), atol=0.03)


# ---------------------------------------------------------------- penalties


def _pen(hist, **kw):
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    return apply_penalties(logits, SampleRow(SamplingParams(**kw), hist)).tolist()


def test_presence_penalty():
    assert _pen([0, 0, 1], presence_penalty=0.5) == pytest.approx([1.5, -1.5, 0.5, 3.0])


def test_frequency_penalty():
    assert _pen([0, 0, 1], frequency_penalty=0.5) == pytest.approx([1.0, -1.5, 0.5, 3.0])


def test_repetition_penalty_divides_positive_multiplies_negative():
    assert _pen([0, 0, 1], repetition_penalty=2.0) == pytest.approx([1.0, -2.0, 0.5, 3.0])
    assert _pen([0, 1], repetition_penalty=1.0) == pytest.approx([2.0, -1.0, 0.5, 3.0])


def test_combined_penalties_one_pass():
    # token 0: 2 - 2*0.5 - 0.25 = 0.75 -> /2 ; token 1: -1 - 0.5 - 0.25 = -1.75 -> *2
    got = _pen([0, 0, 1], frequency_penalty=0.5, presence_penalty=0.25, repetition_penalty=2.0)
    assert got == pytest.approx([0.375, -3.5, 0.5, 3.0])


def test_penalty_ignores_out_of_vocab_ids_and_changes_sampling():
    assert _pen([0, 99], presence_penalty=1.0) == pytest.approx([1.0, -1.0, 0.5, 3.0])
    x = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    assert tokens(x, [row([3], presence_penalty=2.0)]) == [0]  # 3 - 2 = 1 < 2


def test_penalties_accept_tensor_history():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    r = SampleRow(SamplingParams(frequency_penalty=0.5), torch.tensor([0, 0, 1]))
    assert apply_penalties(logits, r).tolist() == pytest.approx([1.0, -1.5, 0.5, 3.0])


# ---------------------------------------------------------------- DRY


def _dry(hist, breakers=frozenset(), vocab=10, **kw):
    kw = {"dry_multiplier": 1.0, "dry_base": 2.0, "dry_allowed_length": 2, **kw}
    r = SampleRow(SamplingParams(**kw), hist, dry_breakers=frozenset(breakers))
    return apply_penalties(torch.zeros(vocab), r).tolist()


def test_dry_penalises_continuation_of_repeat():
    # "5 6 7" repeats; earlier it was followed by 8 -> match length 3 -> 1 * 2^(3-2) = 2
    got = _dry([5, 6, 7, 8, 1, 5, 6, 7])
    assert got == pytest.approx([0, 0, 0, 0, 0, 0, 0, 0, -2.0, 0])


def test_dry_uses_longest_match_per_candidate():
    # 7 followed by 8 twice: match lengths 1 (after "3 7") and 3 (after "5 6 7") -> max 3
    got = _dry([3, 7, 8, 5, 6, 7, 8, 0, 5, 6, 7], dry_allowed_length=1)
    assert got[8] == pytest.approx(-(2.0**2))
    assert sum(got) == pytest.approx(-4.0)


def test_dry_respects_allowed_length_and_defaults():
    assert _dry([7, 8, 3, 7]) == [0.0] * 10  # match length 1 < 2
    assert _dry([7, 8, 3, 7], dry_allowed_length=1)[8] == pytest.approx(-1.0)
    # defaults base 1.75, allowed 2: match "6 7" (length 2) -> multiplier * 1.75^0
    got = _dry([6, 7, 8, 6, 7], dry_base=None, dry_allowed_length=None, dry_multiplier=0.5)
    assert got[8] == pytest.approx(-0.5)


def test_dry_stops_at_sequence_breakers():
    hist = [5, 6, 7, 8, 1, 5, 6, 7]
    assert _dry(hist, breakers={6}) == [0.0] * 10  # match cut to length 1 by breaker 6
    assert _dry(hist, breakers={8}) == [0.0] * 10  # breaker candidates are not penalised
    assert _dry(hist, breakers={5})[8] == pytest.approx(-1.0)  # "6 7" still matches (2^0)
    assert _dry(hist, breakers={7}) == [0.0] * 10  # last token is a breaker


def test_dry_match_capped_at_50():
    hist = [1] * 120
    got = _dry(hist, vocab=3, dry_base=1.0, dry_multiplier=1.0, dry_allowed_length=50)
    assert got[1] == pytest.approx(-1.0)
    got = _dry(hist, vocab=3, dry_base=1.0, dry_multiplier=1.0, dry_allowed_length=51)
    assert got[1] == 0.0


def test_dry_breaker_ids():
    strings = ["a", "\n", "b:", "c", 'say "hi"', "**"]
    assert dry_breaker_ids(["\n", ":", '"', "*"], strings) == frozenset({1, 2, 4, 5})
    assert dry_breaker_ids(["c"], strings) == frozenset({3})


def test_dry_in_sample_changes_choice():
    x = torch.zeros(1, 10)
    x[0, 8] = 1.0
    assert tokens(x, [row([5, 6, 7, 8, 1, 5, 6, 7], dry_multiplier=1.0, dry_base=2.0)]) != [8]


# ---------------------------------------------------------------- bias and masks


def test_logit_bias_forces_token():
    torch.manual_seed(7)
    x = torch.randn(2, 30)
    assert tokens(x, [row(logit_bias={17: 100.0}), row(seed=1, temperature=1.0, logit_bias={3: 100.0})]) == [17, 3]


def test_suppress_tokens_never_chosen():
    x = torch.tensor([[5.0, 4.0, 0.0]])
    assert tokens(x, [row(suppress_tokens=[0])]) == [1]
    assert 0 not in _run_steps(x, [row(seed=0, temperature=2.0, suppress_tokens=[0])], 0, 100)


def test_allowed_token_mask_forbids_tokens():
    x = torch.tensor([[5.0, 1.0, 2.0, 4.0, 0.0]])
    mask = torch.tensor([False, True, True, False, True])
    r = SampleRow(SamplingParams(), [], allowed_token_mask=mask)
    assert tokens(x, [r]) == [2]
    r = SampleRow(SamplingParams(temperature=3.0), [], make_generator(0, "cpu"), allowed_token_mask=mask)
    assert set(_run_steps(x, [r], 0, 200)) == {1, 2, 4}
    # mask shorter than the (padded) logits: the tail is disallowed too
    r = SampleRow(SamplingParams(), [], allowed_token_mask=torch.tensor([True, True, False]))
    assert tokens(x, [r]) == [0] and tokens(x.flip(-1), [r]) == [1]


# ---------------------------------------------------------------- logprobs


def test_logprobs_and_top_logprobs():
    torch.manual_seed(8)
    x = torch.randn(3, 40)
    rows = [row(logprobs=True, top_logprobs=3), row(logprobs=True), row(seed=0, temperature=0.5, logprobs=True)]
    res = sample(x, rows)
    lsm = torch.log_softmax(x, -1)
    top = res[0].top_logprobs
    assert len(top) == 3 and [t for t, _ in top] == lsm[0].topk(3).indices.tolist()
    assert [v for _, v in top] == sorted((v for _, v in top), reverse=True)
    assert top[0][1] == pytest.approx(res[0].logprob, abs=1e-6)
    assert len(res[1].top_logprobs) == 1  # top_logprobs defaults to 1
    # reported before temperature: log_softmax of the unscaled logits
    assert res[2].logprob == pytest.approx(lsm[2, res[2].token].item(), abs=1e-5)
    assert sample(x[:1], [row(logprobs=False, top_logprobs=3)])[0].top_logprobs is None


def test_logprobs_see_bias():
    x = torch.zeros(1, 4)
    (r,) = sample(x, [row(logprobs=True, logit_bias={2: math.log(3.0)})])
    assert r.token == 2 and r.logprob == pytest.approx(math.log(0.5), abs=1e-6)


def test_rows_must_match_batch():
    with pytest.raises(ValueError, match="rows"):
        sample(torch.zeros(2, 4), [row()])


# ---------------------------------------------------------------- params


def test_properties():
    assert SamplingParams().is_greedy and SamplingParams(temperature=0.0).is_greedy
    assert not SamplingParams(temperature=0.7).is_greedy
    assert not SamplingParams(repetition_penalty=1.0, presence_penalty=0.0).needs_history
    assert SamplingParams(repetition_penalty=1.1).needs_history
    assert SamplingParams(dry_multiplier=0.8).needs_history
    assert SamplingParams(logprobs=True).top_logprobs == 1
    assert SamplingParams().top_logprobs is None


def test_with_defaults_from_generation_config():
    gc = {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
          "repetition_penalty": 1.05, "max_new_tokens": 256, "suppress_tokens": [3], "eos_token_id": 2}
    p = SamplingParams(top_k=5).with_defaults(gc)
    assert (p.temperature, p.top_p, p.top_k, p.min_p) == (0.6, 0.9, 5, 0.05)
    assert (p.repetition_penalty, p.max_tokens, p.suppress_tokens) == (1.05, 256, [3])
    assert SamplingParams(temperature=0.0).with_defaults(gc).is_greedy  # explicit greedy wins
    greedy = SamplingParams().with_defaults({**gc, "do_sample": False})
    assert greedy.temperature is None and greedy.is_greedy and greedy.top_p == 0.9
    assert SamplingParams(temperature=0.3).with_defaults({"do_sample": False}).temperature == 0.3
    no_flag = SamplingParams().with_defaults({"temperature": 0.7})
    assert no_flag.temperature == 0.7 and not no_flag.is_greedy
    assert SamplingParams().with_defaults({}).is_greedy
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams().with_defaults({"top_p": "high"})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": "0.9"}, "top_p"),
        ({"top_k": 2.5}, "top_k"),
        ({"min_p": None, "top_k": True}, "top_k"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1.0}, "repetition_penalty"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"presence_penalty": float("inf")}, "presence_penalty"),
        ({"dry_multiplier": -1.0}, "dry_multiplier"),
        ({"dry_base": 0.0}, "dry_base"),
        ({"dry_allowed_length": -1}, "dry_allowed_length"),
        ({"dry_sequence_breakers": "\n"}, "dry_sequence_breakers"),
        ({"stop_seqs": ["ok", ""]}, "stop_seqs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logit_bias": {"5": 1.0}}, "logit_bias"),
        ({"logit_bias": {5: float("nan")}}, "logit_bias"),
        ({"suppress_tokens": [-1]}, "suppress_tokens"),
        ({"seed": 1.5}, "seed"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_invalid_params_raise_naming_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**kwargs)


def test_off_values_are_accepted():
    p = SamplingParams(top_k=-1, top_p=1.0, min_p=0.0, temperature=1.0, stop_seqs=None)
    assert p.stop_seqs == []
    x = torch.tensor([[0.0, 0.1, 0.2]])
    assert set(_run_steps(x, [SampleRow(p, [], make_generator(0, "cpu"))], 0, 100)) == {0, 1, 2}
