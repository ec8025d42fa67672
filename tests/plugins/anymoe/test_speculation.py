"""AnyMoE with speculative decoding: a verify step scores the decode token and its drafts as rows of
one forward, and each draft row's running routing sum must continue the row before it (written in
the same step), so greedy output with drafts equals plain decoding, accepted or rejected drafts alike.
"""

from __future__ import annotations

import pytest

from agentkit import AnyMoeConfig, AnyMoeExpertType, Runner, Which
from agentkit.engine.speculative.suffix_cache import NgramProposer
from agentkit.testing.speculation import Garbage, Oracle, ProposerPlugin, Recorder, ask, run_all, texts

LORA = AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["gate_proj", "up_proj", "down_proj"])
PROMPTS = ["def add(a, b): return a + b " * 3, "1234567890 12 34 56 7890 1234", "The lazy dog sleeps. " * 4,
           "What is the weather in Paris today? It is sunny and warm."]


def moe_runner(moe_models, dataset, gate, proposer_factory, routing: str = "sequence",
               experts: str = "lora") -> Runner:
    ids, kind = (moe_models["adapters"], LORA) if experts == "lora" else (moe_models["merged"], AnyMoeExpertType.FineTuned())
    cfg = AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                       model_ids=ids, expert_type=kind, training=False, gate_model_id=gate, routing=routing)
    return Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg, pa_blk_size=8,
                  prefix_cache_n=0, plugins=[ProposerPlugin(proposer_factory)])


def plain(moe_models, dataset, gate, routing: str = "sequence",
          experts: str = "lora") -> tuple[list[str], list[list[int]], int, list]:
    """Greedy texts without drafts, every sequence's final ids, the vocabulary and the routes."""
    rec = Recorder()
    with moe_runner(moe_models, dataset, gate, lambda t: rec, routing, experts) as r:
        out = texts(run_all(r, [ask(p) for p in PROMPTS], concurrent=False))
        vocab = r.served_model().engine.runner.vocab_size
        routes = r.anymoe_evaluate([(p, 0) for p in PROMPTS]).routes
    return out, rec.finals, vocab, routes


@pytest.mark.parametrize(("routing", "experts"), [("sequence", "lora"), ("token", "lora"), ("sequence", "finetuned")])
def test_greedy_output_with_drafts_equals_plain_decoding(moe_models, dataset, sharp_gate, always_speculate,
                                                         routing, experts):
    expected, finals, vocab, routes = plain(moe_models, dataset, sharp_gate, routing, experts)
    assert len({tuple(r) for r in routes}) > 1, routes  # the prompts really go to different experts
    factories = [lambda t: Oracle(finals, vocab), lambda t: Garbage(vocab), lambda t: NgramProposer(min_n=1)]
    for factory in factories:
        with moe_runner(moe_models, dataset, sharp_gate, factory, routing, experts) as r:
            got = texts(run_all(r, [ask(p) for p in PROMPTS]))  # concurrent: verify rows of several sequences
            stats = r.served_model().engine.speculation.stats
        assert got == expected
        assert stats.verify_steps > 0, stats
        if factory is factories[0]:
            assert 0 < stats.accepted < stats.drafted, stats  # accepted and rejected drafts both happened


def test_load_counts_every_scored_row_including_rejected_drafts(moe_models, dataset, sharp_gate, always_speculate):
    """The per-expert load counts the tokens each expert processed: the prompt, the fed-back
    completion and the draft tokens that verification rejected (scored, then discarded)."""
    _, finals, vocab, _ = plain(moe_models, dataset, sharp_gate)
    with moe_runner(moe_models, dataset, sharp_gate, lambda t: Oracle(finals, vocab)) as r:
        r.anymoe_reset_stats()
        resp = r.send_chat_completion_request(ask(PROMPTS[0]))
        layers = r.anymoe_routing_stats().layers
        spec = r.served_model().engine.speculation.stats
    assert spec.drafted > spec.accepted
    n = resp.usage.prompt_tokens + resp.usage.completion_tokens - 1 + spec.drafted - spec.accepted
    assert all(s.tokens == n for s in layers), ([s.tokens for s in layers], n)


def test_speculation_calibration_at_load_is_not_counted(moe_models, dataset, sharp_gate):
    """The engine times a few scratch verify steps at load (speculation's cost model): no request
    was served, so the routing statistics start empty."""
    with moe_runner(moe_models, dataset, sharp_gate, lambda t: NgramProposer()) as r:
        assert r.served_model().engine.speculation.cost.points  # calibration ran
        assert all(s.tokens == 0 for s in r.anymoe_routing_stats().layers)
