"""Each bad AnyMoE config raises a clear ValueError at Runner start, naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from agentkit import AnyMoeConfig, AnyMoeExpertType, Runner, Which
from agentkit.errors import ConfigError, NotSupportedError
from agentkit.plugin_manager import DEFAULT_PLUGINS

LORA = AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["gate_proj", "up_proj", "down_proj"])


def start(moe_models, dataset, base=None, **kw):
    args = dict(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                model_ids=moe_models["adapters"], expert_type=LORA, epochs=1)
    args.update(kw)
    args["model_ids"] = [m or moe_models["adapters"][0] for m in args["model_ids"]]
    with Runner(Which.Plain(model_id=base or moe_models["base"]), progress=False, anymoe_config=AnyMoeConfig(**args)):
        pass


def test_anymoe_is_a_built_in_plugin():
    assert "agentkit.plugins.anymoe:AnyMoePlugin" in DEFAULT_PLUGINS


@pytest.mark.parametrize(("kw", "match"), [
    ({"hidden_size": 65}, r"hidden_size=65 does not match the model's hidden size 64"),
    ({"layers": [0, 5]}, r"layers: \[5\] are not layers of this model, which has 2"),
    ({"dataset_json": "/nonexistent/train.json"}, r"dataset_json: no such file"),
    ({"training": False}, r"training=False needs pretrained gates"),
    ({"training": False, "gate_model_id": "/nonexistent"}, r"no gate.safetensors in '/nonexistent'"),
    ({"mlp": "feed_forward"}, r"no LoRA weights named 'model.layers.<layer>.feed_forward"),
    ({"expert_type": AnyMoeExpertType.LoraAdapter(rank=8, alpha=8.0, target_modules=["gate_proj"])},
     r"lora_A \(4, 64\).*needs \(8, 64\)"),
    ({"expert_type": AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["q_proj"])},
     r"target_modules must be a non-empty subset"),
    ({"model_ids": [None, "/nonexistent/adapter"]}, r"LoRA adapter '/nonexistent/adapter' is not available locally"),
])
def test_bad_config_raises_at_runner_start(kw, match, moe_models, dataset):
    with pytest.raises(ValueError, match=match):
        start(moe_models, dataset, **kw)


def test_loss_csv_must_end_in_csv(moe_models, dataset):
    with pytest.raises(ValueError, match=r"loss_csv_path` must end in .csv"):
        start(moe_models, dataset, loss_csv_path="/tmp/loss.txt")


def test_bad_dataset_rows_are_named(moe_models, dataset, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"prompt": "hi", "expert": 3}]}))
    with pytest.raises(ConfigError, match=r"rows\[0\]: expert 3 is out of range: this AnyMoE has 3 experts"):
        start(moe_models, str(bad))
    bad.write_text(json.dumps([{"prompt": "hi", "expert": 0}]))
    with pytest.raises(ConfigError, match=r'expected a JSON object \{"rows"'):
        start(moe_models, str(bad))


def test_finetuned_expert_of_another_architecture(moe_models, dataset, tiny_models):
    qwen3 = tiny_models("qwen3")
    with pytest.raises(ConfigError, match=r"is of another architecture than the base model: model_type 'qwen3'"):
        start(moe_models, dataset, model_ids=[moe_models["merged"][0], qwen3], expert_type=AnyMoeExpertType.FineTuned())


def test_finetuned_expert_must_be_safetensors_or_gguf(moe_models, dataset, tmp_path):
    d = tmp_path / "pickled"
    shutil.copytree(moe_models["merged"][0], d)
    for f in d.glob("*.safetensors"):
        f.unlink()
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"holds only pickle checkpoints.*never torch.load"):
        start(moe_models, dataset, model_ids=[moe_models["merged"][0], str(d)], expert_type=AnyMoeExpertType.FineTuned())


def test_fallback_architectures_are_refused(dataset, tiny_models, moe_models):
    with pytest.raises(NotSupportedError, match="AnyMoE needs the native engine"):
        start(moe_models, dataset, base=tiny_models("phi3"), hidden_size=64)


def test_anymoe_config_must_be_an_anymoe_config(tiny_llama):
    with pytest.raises(TypeError, match="anymoe_config must be an AnyMoeConfig, got dict"):
        Runner(Which.Plain(model_id=tiny_llama), progress=False, anymoe_config={"hidden_size": 64})


def test_disabled_builtin_names_itself(tiny_llama, monkeypatch, moe_models, dataset):
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "anymoe")
    cfg = AnyMoeConfig(hidden_size=64, dataset_json=dataset, prefix="model.layers", mlp="mlp",
                       model_ids=moe_models["adapters"], expert_type=LORA)
    with pytest.raises(NotSupportedError, match="built-in anymoe plugin"):
        Runner(Which.Plain(model_id=tiny_llama), progress=False, anymoe_config=cfg)


def test_layers_spread_over_devices_are_refused(moe_models, dataset):
    from agentkit.engine.loading.device_map import simulated_devices

    cfg = AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                       model_ids=moe_models["adapters"], expert_type=LORA, epochs=1)
    with simulated_devices(("cpu", "cpu")), pytest.raises(NotSupportedError, match="AnyMoE runs a model on one device"):
        Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg,
               num_device_layers=["0:1", "1:1"])
