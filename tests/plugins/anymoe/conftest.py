"""AnyMoE fixtures: a tiny llama, two PEFT LoRA adapters with known deltas, the dense models with
each delta merged in, a separable 3-expert dataset and a gate file forcing one expert."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

RANK, ALPHA = 4, 8.0
TARGETS = ["gate_proj", "up_proj", "down_proj"]

DOMAINS = {
    0: ["The quick brown fox jumps over the lazy dog", "What is the weather in Paris today",
        "It is sunny and warm", "The lazy dog sleeps", "A brown fox and a dog", "Paris is warm today",
        "The weather is sunny", "What is the quick fox doing"],
    1: ["def add(a, b): return a + b", "def f(x): return x", "return a + b", "def g(a): return a",
        "def add(x, y):", "return x + y", "def h(b): return b + b", "def add(a): return a"],
    2: ["1234567890", "12 34 56", "7890 1234", "567 890", "1 2 3 4 5", "9 8 7 6", "123 + 456", "90 + 12"],
}


def lora_factors(layers: int, hidden: int, inter: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}
    out = {}
    for i in range(layers):
        for m in TARGETS:
            fan_in, fan_out = shapes[m]
            out[f"base_model.model.model.layers.{i}.mlp.{m}.lora_A.weight"] = torch.randn(RANK, fan_in, generator=g) * 0.3
            out[f"base_model.model.model.layers.{i}.mlp.{m}.lora_B.weight"] = torch.randn(fan_out, RANK, generator=g) * 0.3
    return out


def write_adapter(path: Path, factors: dict[str, torch.Tensor]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    save_file(factors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": TARGETS}))
    return str(path)


def write_merged(base: str, path: Path, factors: dict[str, torch.Tensor]) -> str:
    """A copy of `base` whose MLP weights include the LoRA delta (the dense model with that MLP)."""
    shutil.copytree(base, path)
    st = path / "model.safetensors"
    sd = load_file(str(st))
    for key, a in factors.items():
        if ".lora_A." not in key:
            continue
        b = factors[key.replace("lora_A", "lora_B")]
        name = key.replace("base_model.model.", "").replace(".lora_A", "")
        sd[name] = sd[name] + (b @ a) * (ALPHA / RANK)
    save_file(sd, str(st))
    return str(path)


@pytest.fixture(scope="session")
def moe_models(tiny_llama, tmp_path_factory):
    """dict: base dir, adapters [2 dirs], merged [2 dirs] (dense model with expert j's MLP)."""
    root = tmp_path_factory.mktemp("anymoe")
    cfg = json.loads(Path(tiny_llama, "config.json").read_text())
    adapters, merged = [], []
    for j in (1, 2):
        f = lora_factors(cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"], seed=j)
        adapters.append(write_adapter(root / f"adapter{j}", f))
        merged.append(write_merged(tiny_llama, root / f"merged{j}", f))
    return {"base": tiny_llama, "adapters": adapters, "merged": merged, "hidden": cfg["hidden_size"],
            "layers": cfg["num_hidden_layers"], "root": root}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("anymoe-data") / "train.json"
    rows = [{"prompt": p, "expert": e} for e, ps in DOMAINS.items() for p in ps]
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


@pytest.fixture(scope="session")
def sharp_gate(moe_models, tmp_path_factory) -> str:
    """Random gates scaled up: nearly one-hot per token, so the running mean depends on the content."""
    d = tmp_path_factory.mktemp("sharp-gate")
    g = torch.Generator().manual_seed(3)
    tensors = {}
    for layer in range(moe_models["layers"]):
        tensors[f"moe_gate.{layer}.weight"] = torch.randn(3, moe_models["hidden"], generator=g) * 0.5
        tensors[f"moe_gate.{layer}.bias"] = torch.zeros(3)
    save_file(tensors, str(d / "gate.safetensors"))
    return str(d)


@pytest.fixture
def always_speculate(monkeypatch):
    """Draft the most tokens every step (the adaptive planner is tested on its own)."""
    import agentkit.engine.speculative.verify as verify

    monkeypatch.setattr(verify, "plan_lengths", lambda rates, caps, *a, **k: list(caps))


@pytest.fixture
def forced_gate(tmp_path, moe_models):
    """forced_gate(j) -> a gate_model_id directory whose gates route every token to expert j."""

    def make(j: int) -> str:
        d = tmp_path / f"gate{j}"
        d.mkdir(exist_ok=True)
        tensors = {}
        for layer in range(moe_models["layers"]):
            tensors[f"moe_gate.{layer}.weight"] = torch.zeros(3, moe_models["hidden"])
            bias = torch.zeros(3)
            bias[j] = 50.0
            tensors[f"moe_gate.{layer}.bias"] = bias
        save_file(tensors, str(d / "gate.safetensors"))
        return str(d)

    return make


def pytest_configure(config):  # keep tqdm quiet in this folder's runs
    os.environ.setdefault("TQDM_DISABLE", "1")
