"""AnyMoE end to end on the SmolLM2 GGUF: base + two locally made LoRA adapters (seeded random
low-rank factors, `agentkit.testing.anymoe.write_random_lora`: routing is learnt from the base
model's hidden states, so the adapters' content does not matter here), three text domains
(arithmetic -> base, Python, French), 60 training and 30 held-out prompts."""

from __future__ import annotations

import csv
import json

import pytest

from agentkit import AnyMoeConfig, AnyMoeExpertType, ChatCompletionRequest, Runner, Which
from agentkit.testing.anymoe import split_rows, write_random_lora
from agentkit.testing.speculation import Oracle, ProposerPlugin, Recorder, ask, run_all, texts

LAYERS = [2, 4]


@pytest.mark.slow
def test_smollm2_routes_three_domains(smollm2, tmp_path):
    train, held = split_rows()
    (tmp_path / "train.json").write_text(json.dumps({"rows": train}))
    adapters = [write_random_lora(tmp_path / f"lora{j}", layers=LAYERS, hidden=576, intermediate=1536, seed=j)
                for j in (1, 2)]
    cfg = AnyMoeConfig(hidden_size=576, dataset_json=str(tmp_path / "train.json"), prefix="model.layers", mlp="mlp",
                       model_ids=adapters, layers=LAYERS, lr=5e-3, epochs=30, gate_init="hidden",
                       loss_csv_path=str(tmp_path / "loss.csv"), gate_model_id=str(tmp_path / "gates"),
                       expert_type=AnyMoeExpertType.LoraAdapter(rank=8, alpha=16.0,
                                                                target_modules=["gate_proj", "up_proj", "down_proj"]))
    with Runner(Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1]), progress=False,
                anymoe_config=cfg) as r:
        ev = r.anymoe_evaluate([(x["prompt"], x["expert"]) for x in held])
        r.anymoe_reset_stats()
        for prompt in ("What is 12 + 30?", "def reverse(s):", "Bonjour, comment vas-tu ?"):
            resp = r.send_chat_completion_request(ChatCompletionRequest(
                model="default", messages=[{"role": "user", "content": prompt}], max_tokens=4, temperature=0.0))
            assert resp.choices[0].message.content
        stats = r.anymoe_routing_stats()
    assert ev.accuracy >= 0.9, ev.confusion
    assert all(load > 0 for load in stats.load), stats.load  # every expert served some tokens
    with open(tmp_path / "loss.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["Step", "Gating layer 0", "Gating layer 1"]
    assert (tmp_path / "gates" / "gate.safetensors").is_file()


@pytest.mark.slow
def test_smollm2_greedy_output_with_drafts_equals_plain(smollm2, tmp_path, always_speculate):
    """On the quantized model too, verify rows route and compute exactly as plain decode steps."""
    train, _ = split_rows()
    (tmp_path / "train.json").write_text(json.dumps({"rows": train}))
    adapters = [write_random_lora(tmp_path / f"lora{j}", layers=LAYERS, hidden=576, intermediate=1536, seed=j)
                for j in (1, 2)]
    cfg = AnyMoeConfig(hidden_size=576, dataset_json=str(tmp_path / "train.json"), prefix="model.layers", mlp="mlp",
                       model_ids=adapters, layers=LAYERS, training=False, gate_init="hidden",
                       expert_type=AnyMoeExpertType.LoraAdapter(rank=8, alpha=16.0,
                                                                target_modules=["gate_proj", "up_proj", "down_proj"]))
    which = Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1])
    requests = [ask(p, 24) for p in ("What is 12 + 30?", "def reverse(s):", "Bonjour, comment vas-tu ?")]
    rec = Recorder()
    with Runner(which, progress=False, anymoe_config=cfg, plugins=[ProposerPlugin(lambda t: rec)]) as r:
        expected = texts(run_all(r, requests, concurrent=False))
        vocab = r.served_model().engine.runner.vocab_size
    with Runner(which, progress=False, anymoe_config=cfg,
                plugins=[ProposerPlugin(lambda t: Oracle(rec.finals, vocab))]) as r:
        got = texts(run_all(r, requests))
        stats = r.served_model().engine.speculation.stats
    assert got == expected
    assert 0 < stats.accepted < stats.drafted, stats
