"""AnyMoE on a tiny llama with 3 experts (the base MLP + two LoRA adapters with known deltas).

Forcing expert j (a gate file whose bias puts all probability on j) must give the logits of the
dense model whose MLPs are the base MLPs with delta j merged in; forcing expert 0 must give the
base model's logits bit for bit; and both hold through the normal engine (a chat request).
"""

from __future__ import annotations

import pytest
import torch

from agentkit import AnyMoeConfig, AnyMoeExpertType, ChatCompletionRequest, Runner, Which

IDS = list(range(3, 40))
LORA = AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["gate_proj", "up_proj", "down_proj"])


def logits(runner: Runner) -> torch.Tensor:
    return runner.served_model().backend.logits(IDS, last=len(IDS))


def greedy(runner: Runner) -> str:
    req = ChatCompletionRequest(model="default", messages=[{"role": "user", "content": "def add(a, b):"}],
                                max_tokens=12, temperature=0.0, ignore_eos=True)
    return runner.send_chat_completion_request(req).choices[0].message.content


def moe_config(moe_models, dataset, **kw) -> AnyMoeConfig:
    return AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                        model_ids=moe_models["adapters"], expert_type=LORA, **kw)


@pytest.fixture(scope="module")
def dense(moe_models):
    """Logits and greedy text of the base model and of each merged model (index = expert)."""
    out = []
    for path in [moe_models["base"], *moe_models["merged"]]:
        with Runner(Which.Plain(model_id=path), progress=False) as r:
            out.append((logits(r), greedy(r)))
    return out


@pytest.mark.parametrize("expert", [0, 1, 2])
def test_forcing_expert_j_gives_the_dense_model_with_mlp_j(expert, dense, moe_models, dataset, forced_gate):
    cfg = moe_config(moe_models, dataset, training=False, gate_model_id=forced_gate(expert))
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        got, text = logits(r), greedy(r)
        stats = r.anymoe_routing_stats()
    want, want_text = dense[expert]
    if expert == 0:
        assert torch.equal(got, want)  # the base MLP itself: bit-identical
    else:
        assert not torch.allclose(dense[0][0], want, atol=1e-2)  # the delta really changes the model
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert text == want_text
    assert all(s.load[expert] == 1.0 and s.tokens > 0 for s in stats.layers)


def test_only_the_selected_layers_change(dense, moe_models, dataset, forced_gate):
    """layers=[1]: layer 0 keeps its dense MLP, so the output is neither the base nor merged model's."""
    cfg = moe_config(moe_models, dataset, training=False, gate_model_id=forced_gate(1), layers=[1])
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        got = logits(r)
        assert [s.layer for s in r.anymoe_routing_stats().layers] == [1]
    assert not torch.allclose(got, dense[0][0], atol=1e-3)
    assert not torch.allclose(got, dense[1][0], atol=1e-3)


@pytest.mark.parametrize("expert", [0, 2])
def test_token_routing_with_a_one_hot_gate_is_that_expert(expert, dense, moe_models, dataset, forced_gate):
    """routing="token": base + p_j (E_j - base); with p one-hot it is E_j (or the base) again."""
    cfg = moe_config(moe_models, dataset, training=False, gate_model_id=forced_gate(expert), routing="token", top_k=2)
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        got = logits(r)
    torch.testing.assert_close(got, dense[expert][0], rtol=1e-4, atol=1e-4)


def test_finetuned_experts_are_the_other_models_mlps(dense, moe_models, dataset, forced_gate):
    """FineTuned: the experts are the merged models' own MLP weights (a same-architecture model)."""
    cfg = AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                       model_ids=moe_models["merged"], expert_type=AnyMoeExpertType.FineTuned(), training=False,
                       gate_model_id=forced_gate(2))
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        got = logits(r)
    torch.testing.assert_close(got, dense[2][0], rtol=1e-5, atol=1e-5)


def test_quantized_base_weights_stay_the_served_base(moe_models, dataset, forced_gate):
    """in_situ_quant quantizes the base expert as without AnyMoE: expert 0 gives the ISQ model's logits."""
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, in_situ_quant="Q8_0") as r:
        want = logits(r)
    cfg = moe_config(moe_models, dataset, training=False, gate_model_id=forced_gate(0))
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, in_situ_quant="Q8_0",
                anymoe_config=cfg) as r:
        assert type(r.served_model().engine.runner.model.layers[0].mlp.gate_up).__name__ != "LoadedLinear"
        got = logits(r)
    assert torch.equal(got, want)
