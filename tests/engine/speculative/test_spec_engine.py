"""Speculative decoding in the engine on tiny random models: greedy outputs equal plain decoding
with every proposer, every emitted token is the verified argmax, rejected drafts never reach the
prefix cache, preemption loses nothing, and usage reports what speculation did."""

from __future__ import annotations

import pytest
import torch

import agentkit.engine.speculative.verify as verify
from agentkit import Runner, Which
from agentkit.engine.speculative.suffix_cache import NgramProposer
from agentkit.plugins.speculative import SpeculativePlugin
from agentkit.testing.speculation import (
    PROMPTS,
    Garbage,
    Oracle,
    ProposerPlugin,
    Recorder,
    ask,
    run_all,
    score_decode_and_verify,
    texts,
)

ARCHS = ("llama", "qwen2", "mistral", "qwen3")


def reference(model_dir: str, requests, **kw) -> tuple[list[str], list[list[int]], int]:
    """Plain greedy texts, the final token ids of every sequence, and the vocabulary size."""
    rec = Recorder()
    with Runner(Which.Plain(model_dir), progress=False, plugins=[ProposerPlugin(lambda t: rec)], **kw) as r:
        out = texts(run_all(r, requests, concurrent=False))
        vocab = r.served_model().engine.runner.vocab_size
    return out, rec.finals, vocab


@pytest.fixture(scope="module")
def refs(tiny_models):
    cache = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = reference(tiny_models(arch), [ask(p) for p in PROMPTS])
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_equals_plain_with_ngram_and_oracle_drafts(tiny_models, refs, arch, always_speculate):
    expected, finals, vocab = refs(arch)
    for factory in (lambda t: NgramProposer(min_n=1), lambda t: Oracle(finals, vocab)):
        plugin = ProposerPlugin(factory)
        with Runner(Which.Plain(tiny_models(arch)), progress=False, plugins=[plugin]) as r:
            assert texts(run_all(r, [ask(p) for p in PROMPTS])) == expected
            stats = r.served_model().engine.speculation.stats
            assert stats.verify_steps > 0 and stats.accepted > 0, stats


def test_garbage_drafts_change_nothing_and_every_token_is_the_verified_argmax(tiny_llama, refs, monkeypatch,
                                                                                 always_speculate):
    expected, _, vocab = refs("llama")
    checked = []
    real = verify.accept_draft

    def checking(logits, draft, rows, probs=None):
        verdict = real(logits, draft, rows, probs)
        argmax = logits.float().argmax(-1).tolist()
        tokens = [r.token for r in verdict.results]
        assert tokens == argmax[: len(tokens)]  # each emitted token is its row's argmax
        assert tokens[: verdict.num_accepted] == list(draft[: verdict.num_accepted])
        assert verdict.num_accepted == len(draft) or draft[verdict.num_accepted] != tokens[-1]
        checked.append(len(tokens))
        return verdict

    monkeypatch.setattr(verify, "accept_draft", checking)
    garbage = Garbage(vocab)
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: garbage)]) as r:
        assert texts(run_all(r, [ask(p) for p in PROMPTS])) == expected
        stats = r.served_model().engine.speculation.stats
    assert len(checked) == stats.verify_steps > 50
    assert stats.drafted > 5 * stats.accepted  # garbage is (nearly) always rejected


def test_rejected_tokens_never_reach_the_prefix_cache(tiny_llama, refs, always_speculate):
    expected, _, vocab = refs("llama")
    garbage = Garbage(vocab, seed=1)
    with Runner(Which.Plain(tiny_llama), progress=False, prefix_cache_n=16, pa_blk_size=8,
                plugins=[ProposerPlugin(lambda t: garbage)]) as r:
        assert texts(run_all(r, [ask(p) for p in PROMPTS])) == expected
        blocks = r.served_model().engine.blocks
        bs = blocks.block_size
        aligned = {tuple(seq[i : i + bs]) for seq in garbage.finals for i in range(0, len(seq) - bs + 1, bs)}
        cached = [tuple(blocks.blocks[bid].token_ids) for bid in blocks.cached.values()]
        assert cached and all(c in aligned for c in cached)
        # later requests reuse those blocks (prefix hits) and still decode the plain outputs
        again = run_all(r, [ask(p) for p in PROMPTS], concurrent=False)
        assert texts(again) == expected
        assert sum((x.usage.prompt_tokens_details.cached_tokens if x.usage.prompt_tokens_details else 0)
                   for x in again) > 0
        assert all(b.ref_count == 0 for b in blocks.blocks)  # every draft slot went back to the pool


def test_preemption_during_speculation_loses_nothing(tiny_llama, always_speculate):
    long = [ask(p, n=60) for p in PROMPTS[:4]]
    expected, finals, vocab = reference(tiny_llama, long, prefix_cache_n=0)
    oracle = Oracle(finals, vocab)
    with Runner(Which.Plain(tiny_llama), progress=False, pa_ctxt_len=160, max_seqs=4, prefix_cache_n=0,
                plugins=[ProposerPlugin(lambda t: oracle)]) as small:
        got = texts(run_all(small, long))
        engine = small.served_model().engine
        assert engine.scheduler.num_preemptions > 0
        assert engine.speculation.stats.accepted > 0
    assert got == expected


def test_stop_strings_max_tokens_and_penalties_match_plain(tiny_llama, always_speculate):
    stop_text, _, _ = reference(tiny_llama, [ask(PROMPTS[0], n=30)])
    stop = stop_text[0][10:14]
    requests = [ask(PROMPTS[0], n=30, stop_seqs=[stop]), ask(PROMPTS[2], n=13),
                ask(PROMPTS[5], n=30, repetition_penalty=1.3, presence_penalty=0.5),
                ask(PROMPTS[1], n=30, logit_bias={17: 5.0, 23: -3.0}), ask(PROMPTS[3], n=5, ignore_eos=False)]
    expected, finals, vocab = reference(tiny_llama, requests)
    oracle = Oracle(finals, vocab)
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: oracle)]) as r:
        got = run_all(r, requests)
        assert r.served_model().engine.speculation.stats.accepted > 0
    assert texts(got) == expected
    assert [x.usage.completion_tokens for x in got][1] == 13


def test_usage_reports_drafts_and_engine_totals(tiny_llama, refs, always_speculate):
    _, finals, vocab = refs("llama")
    oracle = Oracle(finals, vocab)
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: oracle)]) as r:
        got = run_all(r, [ask(p) for p in PROMPTS], concurrent=False)
        stats = r.served_model().engine.speculation.stats
    specs = [x.usage.speculative for x in got]
    assert all(s is not None and s.verify_steps > 0 for s in specs)
    assert sum(s.drafted_tokens for s in specs) == stats.drafted
    assert sum(s.accepted_tokens for s in specs) == stats.accepted
    assert sum(s.verify_steps for s in specs) == stats.verify_steps
    assert all(1.0 <= s.mean_acceptance_length <= 8.0 for s in specs)
    assert got[0].usage.to_dict()["speculative"]["accepted_tokens"] == specs[0].accepted_tokens
    assert stats.mean_acceptance_length > 1.5


def test_sampled_requests_speculate_and_stay_valid(tiny_llama, refs, always_speculate):
    _, finals, vocab = refs("llama")
    oracle = Oracle(finals, vocab)
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: oracle)]) as r:
        got = run_all(r, [ask(p, temperature=0.7, top_k=1, logprobs=True) for p in PROMPTS])
        assert r.served_model().engine.speculation.stats.verify_steps > 0
    for x in got:
        assert x.usage.completion_tokens == 24
        assert all(lp.logprob <= 0.0 for lp in x.choices[0].logprobs.content)


def test_off_switch_and_fallback_runner(tiny_llama, tiny_models):
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[SpeculativePlugin(mode="off")]) as r:
        assert r.served_model().engine.speculation is None
    with Runner(Which.Plain(tiny_llama), progress=False) as r:  # the default: n-gram drafts on
        assert isinstance(r.served_model().engine.speculation, verify.Speculation)
    with Runner(Which.Plain(tiny_models("phi3")), progress=False) as r:  # transformers fallback: off
        assert r.served_model().engine.speculation is None
    with pytest.raises(ValueError, match="mode must be one of"):
        SpeculativePlugin(mode="fast")


def test_a_failing_proposer_costs_nothing_but_speed(tiny_llama, refs, always_speculate):
    expected, _, _ = refs("llama")

    class Broken(Recorder):
        max_draft = 4

        def propose(self, ctx, k):
            raise RuntimeError("boom")

    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: Broken())]) as r:
        assert texts(run_all(r, [ask(p) for p in PROMPTS])) == expected


def test_verify_rows_score_like_decode_steps(tiny_llama):
    """The runner scores draft tokens as decode rows: the logits of one-token steps (bit-identical
    with GGUF's batch-invariant kernels, see test_spec_smollm2.py; the tiny model's dense float
    matmuls differ in the last bits between 1 and 6 rows)."""
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[SpeculativePlugin(mode="off")]) as r:
        one, many = score_decode_and_verify(r.served_model().engine, [5 + (i * 13) % 300 for i in range(40)], 34,
                                            timeout=60)
    torch.testing.assert_close(many, one, rtol=0, atol=1e-4)
    assert torch.equal(many.argmax(-1), one.argmax(-1))


def test_draft_model_greedy_equals_plain(tiny_llama, tiny_models, refs, always_speculate):
    expected, _, _ = refs("llama")
    draft_dir = tiny_models("qwen2")  # another native architecture with the same tokenizer
    with Runner(Which.Plain(tiny_llama), progress=False, which_draft=Which.Plain(draft_dir), speculative_gamma=3) as r:
        spec = r.served_model().engine.speculation
        assert type(spec.proposer).__name__ == "DraftModelProposer" and spec.proposer.max_draft == 3
        assert texts(run_all(r, [ask(p) for p in PROMPTS])) == expected
        assert spec.stats.verify_steps > 0
        assert spec.proposer.token_cost_s > 0
        assert not spec.proposer._shadows  # every shadow sequence was released


def test_which_draft_needs_the_plugin(tiny_llama, monkeypatch):
    from agentkit.errors import NotSupportedError

    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "speculative")
    with pytest.raises(NotSupportedError, match="which_draft"):
        Runner(Which.Plain(tiny_llama), progress=False, which_draft=Which.Plain(tiny_llama))


@pytest.mark.parametrize("grammar_type,grammar", [
    ("regex", "(the|fox|dog|abc|Paris|weather| )+ [0-9]{3}\\."),
    ("json_schema", '{"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},'
                    ' "required": ["city", "n"]}'),
], ids=["regex", "json"])
def test_constrained_requests_speculate_and_match_plain(tiny_llama, always_speculate, grammar_type, grammar):
    requests = [ask(p, n=30, grammar=grammar, grammar_type=grammar_type, ignore_eos=False) for p in PROMPTS[:4]]
    expected, finals, vocab = reference(tiny_llama, requests)
    for proposer in (Oracle(finals, vocab), Garbage(vocab, seed=2)):
        with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t, p=proposer: p)]) as r:
            got = run_all(r, requests)
            stats = r.served_model().engine.speculation.stats
        assert texts(got) == expected
        if isinstance(proposer, Oracle):
            assert stats.accepted > 0, stats
