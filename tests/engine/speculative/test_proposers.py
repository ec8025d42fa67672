"""The built-in proposers and the adaptive controller, without a model."""

from __future__ import annotations

import pytest

from agentkit.engine.speculative.adaptive import Acceptance, CostModel, expected_tokens, plan_lengths
from agentkit.engine.speculative.draft_model import check_same_vocabulary
from agentkit.engine.speculative.prompt_lookup import NgramIndex, PromptLookupProposer, continuation
from agentkit.engine.speculative.protocol import DraftContext
from agentkit.engine.speculative.suffix_cache import NgramProposer, SuffixCache
from agentkit.errors import ConfigError


def ctx(ids, seq_id=0, num_prompt=None):
    return DraftContext(seq_id, ids, len(ids) if num_prompt is None else num_prompt)


def test_prompt_lookup_continues_the_longest_latest_match():
    p = PromptLookupProposer(max_draft=4)
    # "2 3" occurs twice; the latest occurrence (followed by 9) wins, and the 3-gram "1 2 3" beats it
    assert p.propose(ctx([1, 2, 3, 4, 5, 8, 2, 3, 9, 7, 1, 2, 3]), 3).tokens == [4, 5, 8]
    assert p.propose(ctx([6, 2, 3, 9, 7, 0, 2, 3], seq_id=1), 2).tokens == [9, 7]
    assert p.propose(ctx([1, 2, 3], seq_id=2), 3).tokens == []  # nothing earlier to copy
    assert continuation([7, 8, 7, 8], 2, 5) == [7, 8, 7, 8, 7]  # a repeating tail extends periodically


def test_prompt_lookup_follows_the_copy_in_progress_over_the_latest_match():
    src = [50, 51, 7, 8, 9, 1, 60, 7, 8, 9, 2]  # two similar records: "7 8 9" then 1, then 2
    copying = src + [50, 51, 7, 8, 9]  # the answer copies the first record
    assert PromptLookupProposer(max_n=3).propose(ctx(copying), 2).tokens == [2, 50]  # latest match: wrong record
    p = PromptLookupProposer(max_n=3)
    assert p.propose(ctx(copying[:-3]), 3).tokens == [7, 8, 9]  # "50 51" starts the copy
    assert p.propose(ctx(copying), 2).tokens == [1, 60]  # the copy in progress goes on
    assert p.propose(ctx(copying + [2]), 2).tokens == [50, 51]  # the answer left its source: the index decides
    p.finished(ctx(copying))
    assert p._cursor == {}


def test_prompt_lookup_index_grows_incrementally_and_is_freed():
    p = PromptLookupProposer(max_draft=4)
    ids = [1, 2, 3, 4]
    assert p.propose(ctx(ids), 2).tokens == []
    ids += [1, 2]
    assert p.propose(ctx(ids), 2).tokens == [3, 4]
    p.finished(ctx(ids))
    assert p._index == {}
    with pytest.raises(ValueError, match="min_n"):
        NgramIndex(3, 2)


def test_suffix_cache_learns_finished_completions_only_and_stays_bounded():
    cache = SuffixCache(max_tokens=64, max_n=3)
    prop = NgramProposer(max_draft=4, cache=cache)
    done = [50, 51, 52, 10, 11, 12, 13, 14]  # prompt 50 51 52, completion 10..14
    prop.finished(ctx(done, num_prompt=3))
    # another request (another session) reaching "52 10 11" gets the rest of the earlier completion
    assert prop.propose(ctx([70, 52, 10, 11], seq_id=9), 3).tokens == [12, 13, 14]
    assert cache.lookup([99, 98], 3) == ([], 0)
    for i in range(40):
        cache.add([200 + i] * 3 + list(range(100 + i, 110 + i)), 3)
    assert len(cache.tokens) <= 64 and cache.num_documents == 41
    assert -1 not in prop.propose(ctx([100 + 39, 101 + 39], seq_id=3), 8).tokens


def test_expected_tokens_and_the_planner():
    assert expected_tokens(0.0, 5) == 1.0 and expected_tokens(1.0, 5) == 6.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)
    cheap = CostModel(points={1: 1.0, 8: 1.1, 16: 1.3, 64: 6.0})
    assert plan_lengths([0.9], [8], 1, cheap) == [8]  # copying: long drafts pay
    assert plan_lengths([0.01], [8], 1, cheap) == [0]  # non-repetitive text: off
    # a full batch is compute-bound: extra rows cost their share, so speculation backs off
    assert sum(plan_lengths([0.6] * 32, [8] * 32, 32, cheap)) < sum(plan_lengths([0.6], [8], 1, cheap)) * 32
    linear = CostModel(points={1: 1.0, 2: 2.0, 9: 9.0})  # every row costs a full step: never pays
    assert plan_lengths([0.9], [8], 1, linear) == [0]
    # a draft model whose tokens cost as much as a target step never pays either
    assert plan_lengths([0.9], [8], 1, cheap, draft_token_s=1.0) == [0]


def test_acceptance_estimate_follows_evidence_and_decays_when_idle():
    a = Acceptance()
    assert a.rate == pytest.approx(1 / 3)
    for _ in range(10):
        a.observe(8, 8)
    assert a.rate > 0.9 and a.drafted == 80 and a.accepted == 80 and a.steps == 10
    for _ in range(10):
        a.observe(8, 0)
    low = a.rate
    assert low < 0.5
    for _ in range(200):
        a.idle()
    assert a.rate == pytest.approx(1 / 3, abs=0.02)  # after a long plain stretch: back to the prior, probes again


def test_cost_model_is_monotone_and_learns_online():
    c = CostModel()
    assert not c.calibrated
    c.observe(1, 0.010)
    c.observe(9, 0.008)  # noisy sample: 9 rows measured cheaper than 1
    assert c.calibrated and c.time(9) >= c.time(1) == 0.010
    assert c.time(40) >= c.time(9)
    for _ in range(8):  # the step really got slower (a longer context): the estimate follows
        c.observe(1, 0.020)
    assert c.time(1) == pytest.approx(0.020)


class _Tok:
    def __init__(self, strings):
        self.strings = tuple(strings)

    def token_strings(self):
        return self.strings


def test_draft_model_must_share_the_vocabulary():
    check_same_vocabulary(_Tok("abc"), _Tok("abc"))
    with pytest.raises(ConfigError, match="vocabulary of 4 tokens but the target model has 3"):
        check_same_vocabulary(_Tok("abc"), _Tok("abcd"))
    with pytest.raises(ConfigError, match="differs .* at token 1"):
        check_same_vocabulary(_Tok("abc"), _Tok("axc"))
