"""AnyMoE gate training on the tiny llama: a separable 3-domain dataset is learnt to 100% routing
accuracy, gates round-trip through gate.safetensors, the loss CSV has mistral.rs's columns, and
gate_init="hidden" routes without training."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from agentkit import AnyMoeConfig, AnyMoeExpertType, Runner, Which
from agentkit.errors import ConfigError

LORA = AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["gate_proj", "up_proj", "down_proj"])


def config(moe_models, dataset, **kw) -> AnyMoeConfig:
    return AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                        model_ids=moe_models["adapters"], expert_type=LORA, **kw)


def gate_tensors(r: Runner) -> dict[str, torch.Tensor]:
    state = r.served_model().engine.runner.model.anymoe
    return {f"moe_gate.{m.layer}.{k}": getattr(m.gate, k).detach().clone() for m in state.layers
            for k in ("weight", "bias")}


@pytest.fixture(scope="module")
def trained(moe_models, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    cfg = config(moe_models, dataset, lr=1e-2, epochs=60, batch_size=4, gate_model_id=str(out / "gates"),
                 loss_csv_path=str(out / "loss.csv"))
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg, seed=1) as r:
        yield {"eval": r.anymoe_evaluate(dataset), "gates": gate_tensors(r), "dir": out,
               "state": r.served_model().engine.runner.model.anymoe}


def test_training_learns_a_separable_dataset_to_full_accuracy(trained):
    ev = trained["eval"]
    assert ev.accuracy == 1.0 and ev.prompt_accuracy == 1.0, ev.confusion
    assert sum(map(sum, ev.confusion)) == 24 * 2  # 24 prompts x 2 MoE layers
    losses = trained["state"].training_losses
    assert len(losses) == 60 * 6  # epochs x ceil(24 / 4) steps
    first, last = sum(losses[0]) / 2, sum(losses[-1]) / 2
    assert last < first - 0.3  # the reference loss (cross-entropy of mean probabilities) fell


def test_gates_round_trip_through_gate_safetensors(trained, moe_models, dataset):
    saved = load_file(str(trained["dir"] / "gates" / "gate.safetensors"))
    assert sorted(saved) == sorted(trained["gates"]) == sorted(
        f"moe_gate.{i}.{k}" for i in range(moe_models["layers"]) for k in ("weight", "bias"))
    assert saved["moe_gate.0.weight"].shape == (3, moe_models["hidden"])
    cfg = config(moe_models, dataset, training=False, gate_model_id=str(trained["dir"] / "gates"))
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        loaded = gate_tensors(r)
        ev = r.anymoe_evaluate(dataset)
    assert all(torch.equal(loaded[k], trained["gates"][k]) for k in loaded)
    assert ev.routes == trained["eval"].routes


def test_loss_csv_has_the_documented_columns(trained):
    with open(trained["dir"] / "loss.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Step", "Gating layer 0", "Gating layer 1"]
    assert len(rows) == 1 + 60 * 6
    assert rows[1][0] == "Step 0" and rows[-1][0] == f"Step {60 * 6 - 1}"
    assert all(len(r) == 3 and all(float(v) > 0 for v in r[1:]) for r in rows[1:])
    assert [float(v) for v in rows[-1][1:]] == pytest.approx(trained["state"].training_losses[-1], abs=1e-4)


def test_hidden_state_init_routes_without_training(moe_models, dataset):
    cfg = config(moe_models, dataset, training=False, gate_init="hidden")
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg) as r:
        ev = r.anymoe_evaluate(dataset)
    assert ev.accuracy >= 0.9, ev.confusion


def test_csv_dataset_trains_like_the_json(moe_models, dataset, tmp_path):
    rows = json.loads(open(dataset).read())["rows"]
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "expert"])
        w.writerows([r["prompt"], r["expert"]] for r in rows)
    cfg = config(moe_models, str(path), lr=1e-2, epochs=60, layers=[1])
    with Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg, seed=1) as r:
        assert r.anymoe_evaluate(dataset).accuracy == 1.0
        with pytest.raises(ConfigError, match="expert 7 is out of range"):
            r.anymoe_evaluate([("hello", 7)])


def test_written_out_gradients_match_autograd():
    """The gate loss's hand-written gradients equal autograd's on padded mini-batches."""
    from agentkit.plugins.anymoe.training import loss_and_grads

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.float64)
    mask[0, 5:] = 0
    mask[2, 2:] = 0
    x = x * mask[..., None]
    labels = torch.tensor([2, 0, 1])
    w = torch.randn(3, 16, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(x @ w.t() + b, -1) * mask[..., None]
    ref = torch.nn.functional.cross_entropy(p.sum(1) / mask.sum(1)[:, None], labels)
    ref.backward()
    loss, dw, db = loss_and_grads(w.detach(), b.detach(), x, mask, labels)
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(dw, w.grad)
    torch.testing.assert_close(db, b.grad)
