"""Tests for model loading: token sources, offline model resolution, safetensors and GGUF loading.

GGUF files for the tiny fixture models are written at test time with `gguf.GGUFWriter` (tensor
names from gguf's own llama.cpp name map, q/k permuted as llama.cpp's converter does), so the
native GGUF path is checked exactly against the original weights in milliseconds. The real
SmolLM2 GGUF is checked against transformers' own GGUF loader.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import numpy as np
import pytest
import torch

from agentkit.engine.loading.hub import parse_token_source, resolve_model_dir
from agentkit.engine.loading.loader import LoadedModel, load_gguf, load_plain, resolve_dtype
from agentkit.errors import ConfigError, ModelLoadError, ModelNotFoundError
from agentkit.testing import write_tiny_gguf

# --------------------------------------------------------------------------- token sources


def test_token_source_literal():
    assert parse_token_source("literal:hf_abc") == "hf_abc"
    assert parse_token_source("literal:a:b") == "a:b"  # only the first ':' separates


def test_token_source_env(monkeypatch):
    monkeypatch.setenv("AGENTKIT_TEST_TOKEN", "tok-from-env")
    assert parse_token_source("env:AGENTKIT_TEST_TOKEN") == "tok-from-env"
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "default-var-token")
    assert parse_token_source("env") == "default-var-token"
    monkeypatch.delenv("AGENTKIT_TEST_TOKEN")
    with pytest.warns(UserWarning, match="AGENTKIT_TEST_TOKEN"):
        assert parse_token_source("env:AGENTKIT_TEST_TOKEN") is None


def test_token_source_path(tmp_path):
    f = tmp_path / "token"
    f.write_text("  hf_from_file\n")
    assert parse_token_source(f"path:{f}") == "hf_from_file"
    with pytest.warns(UserWarning, match="does not exist"):
        assert parse_token_source(f"path:{tmp_path / 'missing'}") is None


def test_token_source_none():
    assert parse_token_source("none") is None


def test_token_source_cache(monkeypatch, tmp_path):
    for var in ("HF_TOKEN", "HF_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cached token is the normal case: silent
        assert parse_token_source("cache") is None
    (tmp_path / "token").write_text("hf_cached\n")
    assert parse_token_source("cache") == "hf_cached"
    monkeypatch.setenv("HF_HUB_TOKEN", "hf_hub_env")
    assert parse_token_source("cache") == "hf_hub_env"
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert parse_token_source("cache") == "hf_env"


@pytest.mark.parametrize("bad", ["token:abc", "hf_abc", "", "literal", "path", "CACHE", "none:x"])
def test_token_source_invalid(bad):
    with pytest.raises(ConfigError, match="Invalid token source format") as info:
        parse_token_source(bad)
    assert "literal:" in str(info.value) and "cache" in str(info.value)


# --------------------------------------------------------------------------- resolve_model_dir


def test_resolve_local_dir(tiny_llama, tmp_path):
    assert resolve_model_dir(tiny_llama) == os.path.abspath(tiny_llama)
    assert resolve_model_dir(tiny_llama, filename="config.json") == os.path.abspath(tiny_llama)
    with pytest.raises(ValueError, match="nope.gguf"):
        resolve_model_dir(tiny_llama, filename="nope.gguf")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_dir(os.path.join(tiny_llama, "config.json"))


@pytest.mark.parametrize("path", ["/no/such/model/dir", "./no-such-model-dir", "~/no-such-model-dir-xyz"])
def test_resolve_missing_local_path_is_fast(path):
    t0 = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="no such model directory") as info:
        resolve_model_dir(path)
    assert path in str(info.value)
    assert time.monotonic() - t0 < 2.0


def test_resolve_unknown_hub_id_fails_fast(monkeypatch, tmp_path):
    # Hang guard: even with HF_HUB_OFFLINE unset nothing may touch the network or retry.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for kwargs in ({}, {"hf_cache_path": str(tmp_path)}):
        t0 = time.monotonic()
        with pytest.raises(ModelNotFoundError) as info:  # a ValueError, as in mistral.rs
            resolve_model_dir("agentkit-test-org/surely-not-cached-model", **kwargs)
        assert time.monotonic() - t0 < 2.0
        msg = str(info.value)
        assert "agentkit-test-org/surely-not-cached-model" in msg
        assert "huggingface-cli download agentkit-test-org/surely-not-cached-model" in msg
        assert "local directory" in msg


def test_resolve_unknown_hub_id_without_offline_env(tmp_path):
    # A fresh interpreter that never saw HF_HUB_OFFLINE: still no network, no retries.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path)
    code = (
        "import time\n"
        "from agentkit.engine.loading.hub import resolve_model_dir\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    resolve_model_dir('agentkit-test-org/not-cached')\n"
        "except ValueError as e:\n"
        "    print(round(time.monotonic() - t, 3), 'not-cached' in str(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seconds, named = out.stdout.split()
    assert named == "True" and float(seconds) < 2.0


def _fake_hub_cache(cache: str, repo_id: str, source_dir: str) -> str:
    """Lay out `source_dir`'s files like huggingface_hub's cache for `repo_id`; return the snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as fh:
        fh.write(commit)
    snapshot = os.path.join(repo, "snapshots", commit)
    shutil.copytree(source_dir, snapshot)
    return snapshot


def test_hub_id_from_cache_loads(tiny_llama, tmp_path):
    snapshot = _fake_hub_cache(str(tmp_path), "tiny-org/tiny-llama", tiny_llama)
    assert os.path.samefile(resolve_model_dir("tiny-org/tiny-llama", hf_cache_path=str(tmp_path)), snapshot)
    lm = load_plain("tiny-org/tiny-llama", dtype=torch.float32, hf_cache_path=str(tmp_path), progress=False)
    assert lm.model_id == "tiny-org/tiny-llama"
    assert os.path.samefile(lm.model_dir, snapshot)


# --------------------------------------------------------------------------- resolve_dtype


def test_resolve_dtype():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("f16", cpu) == torch.float16
    assert resolve_dtype("F32", cpu) == torch.float32
    with pytest.raises(ConfigError, match="float64"):
        resolve_dtype("float64", cpu)


# --------------------------------------------------------------------------- load_plain


def _reference_state_dict(model_dir: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    sd = model.state_dict()
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def _assert_same_weights(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], dtype=torch.float32):
    assert sorted(got) == sorted(ref)
    for k, v in ref.items():
        assert got[k].shape == v.shape, k
        assert got[k].dtype == dtype, k
        assert torch.equal(got[k], v.to(dtype)), k


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3"])
def test_load_plain_matches_transformers(tiny_models, arch):
    d = tiny_models(arch)
    lm = load_plain(d, dtype=torch.float32, progress=False)
    assert isinstance(lm, LoadedModel)
    assert lm.arch == arch == lm.config.model_type
    assert lm.model_id == d and lm.model_dir == os.path.abspath(d) and lm.gguf_path is None
    assert "lm_head.weight" not in lm.state_dict  # tied in the fixtures: not invented
    _assert_same_weights(lm.state_dict, _reference_state_dict(d))
    assert lm.max_position_embeddings == 512
    assert lm.generation_config.get("pad_token_id") == lm.config.pad_token_id
    assert isinstance(lm.tokenizer_config, dict) and lm.gguf_chat_template is None


def test_load_plain_bf16_and_sharded(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    assert (sharded / "model.safetensors.index.json").exists()
    assert len(list(sharded.glob("*.safetensors"))) > 1
    lm = load_plain(str(sharded), dtype=torch.bfloat16, progress=False)
    _assert_same_weights(lm.state_dict, _reference_state_dict(tiny_llama), dtype=torch.bfloat16)
    assert lm.tokenizer_config is None  # no tokenizer files were saved there


def test_load_plain_rejects_pickle_only(tiny_llama, tmp_path):
    d = tmp_path / "binonly"
    d.mkdir()
    shutil.copy(os.path.join(tiny_llama, "config.json"), d)
    (d / "pytorch_model.bin").write_bytes(b"not a real pickle; must never be unpickled")
    with pytest.raises(ModelLoadError, match="safetensors") as info:
        load_plain(str(d), dtype=torch.float32, progress=False)
    assert "pytorch_model.bin" in str(info.value)


def test_load_plain_needs_config(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_plain(str(tmp_path), dtype=torch.float32, progress=False)


# --------------------------------------------------------------------------- GGUF (tiny, written here)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_load_gguf_roundtrip_native(tiny_models, tmp_path, arch):
    from transformers import AutoConfig

    d = tiny_models(arch)
    original = write_tiny_gguf(d, str(tmp_path / "m.gguf"), arch)
    lm = load_gguf(str(tmp_path), "m.gguf", dtype=torch.float32, progress=False)
    _assert_same_weights(lm.state_dict, original)  # exact: F32 tensors, permutation undone
    if arch == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in lm.state_dict
    if arch == "qwen3":
        assert "model.layers.1.self_attn.k_norm.weight" in lm.state_dict
    ref = AutoConfig.from_pretrained(d)
    c = lm.config
    assert lm.arch == arch == c.model_type
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "tie_word_embeddings",
    ):
        assert getattr(c, key) == getattr(ref, key), key
    assert c.head_dim == (getattr(ref, "head_dim", None) or ref.hidden_size // ref.num_attention_heads)
    assert c.rms_norm_eps == pytest.approx(ref.rms_norm_eps)
    assert c.rope_parameters["rope_theta"] == pytest.approx(ref.rope_parameters["rope_theta"])
    assert lm.gguf_chat_template == "{{ messages[0]['content'] }}"
    assert lm.gguf_path == str(tmp_path / "m.gguf") and lm.model_dir == str(tmp_path)
    assert lm.generation_config == {} and lm.tokenizer_config is None
    assert lm.max_position_embeddings == 512


def test_load_gguf_f16_dtypes_and_untied_head(tiny_llama, tmp_path):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_llama)
    rng = np.random.default_rng(0)
    head = rng.standard_normal((cfg.vocab_size, cfg.hidden_size)).astype(np.float16)  # HF order
    original = write_tiny_gguf(
        tiny_llama,
        str(tmp_path / "h.gguf"),
        "llama",
        np_dtype=np.float16,
        extra_tensors={"output.weight": head},
    )
    lm16 = load_gguf(str(tmp_path), "h.gguf", dtype=torch.float16, progress=False)
    assert lm16.config.tie_word_embeddings is False
    assert torch.equal(lm16.state_dict["lm_head.weight"], torch.from_numpy(head))
    assert torch.equal(
        lm16.state_dict["model.layers.0.self_attn.q_proj.weight"],
        original["model.layers.0.self_attn.q_proj.weight"].half(),
    )
    lm32 = load_gguf(str(tmp_path), ["h.gguf"], dtype=torch.float32, progress=False)
    lmbf = load_gguf(str(tmp_path), "h.gguf", dtype=torch.bfloat16, progress=False)
    for k, v in lm16.state_dict.items():
        assert torch.equal(lm32.state_dict[k], v.float()), k
        assert torch.equal(lmbf.state_dict[k], v.float().to(torch.bfloat16)), k


def test_load_gguf_split_files(tiny_llama, tmp_path):
    first = write_tiny_gguf(
        tiny_llama,
        str(tmp_path / "s-00001-of-00002.gguf"),
        "llama",
        keep=lambda n: not n.startswith("blk.1."),
    )
    write_tiny_gguf(
        tiny_llama, str(tmp_path / "s-00002-of-00002.gguf"), "llama", keep=lambda n: n.startswith("blk.1.")
    )
    names = ["s-00001-of-00002.gguf", "s-00002-of-00002.gguf"]
    lm = load_gguf(str(tmp_path), names, dtype=torch.float32, progress=False)
    _assert_same_weights(lm.state_dict, first)
    assert lm.gguf_path == str(tmp_path / names[0])
    with pytest.raises(ValueError, match="pass all of them") as info:
        load_gguf(str(tmp_path), names[0], dtype=torch.float32, progress=False)
    assert "blk.1.attn_q.weight" in str(info.value)


def test_load_gguf_q8_0_matches_transformers(tiny_llama, tmp_path):
    import gguf
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    original = write_tiny_gguf(
        tiny_llama, str(tmp_path / "q.gguf"), "llama", qtype=gguf.GGMLQuantizationType.Q8_0
    )
    lm = load_gguf(str(tmp_path), "q.gguf", dtype=torch.float32, progress=False)
    cfg = AutoConfig.from_pretrained(str(tmp_path), gguf_file="q.gguf")
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(cfg)
    ref = load_gguf_checkpoint(str(tmp_path / "q.gguf"), return_tensors=True, model_to_load=skeleton)[
        "tensors"
    ]
    _assert_same_weights(lm.state_dict, ref)
    q = lm.state_dict["model.layers.0.self_attn.q_proj.weight"]
    qo = original["model.layers.0.self_attn.q_proj.weight"]
    assert not torch.equal(q, qo)  # really quantized ...
    assert torch.allclose(q, qo, atol=0.02 * qo.abs().max().item())  # ... and in HF row order


def test_load_gguf_llama3_rope_freqs(tiny_llama, tmp_path):
    from agentkit.engine.loading.gguf_config import llama3_rope_factors

    factors = np.array(llama3_rope_factors(10000.0, 16, 8.0, 1.0, 4.0, 8192), dtype=np.float32)
    assert 1.0 < sorted(factors)[-2] < 8.0  # the smoothed band is exercised
    write_tiny_gguf(tiny_llama, str(tmp_path / "r.gguf"), "llama", extra_tensors={"rope_freqs.weight": factors})
    lm = load_gguf(str(tmp_path), "r.gguf", dtype=torch.float32, progress=False)
    rope = lm.config.rope_parameters
    assert rope["rope_type"] == "llama3" and rope["factor"] == 8.0
    assert rope["original_max_position_embeddings"] == 8192
    assert (rope["low_freq_factor"], rope["high_freq_factor"]) == (1.0, 4.0)
    assert "rope_freqs.weight" not in lm.state_dict and len(lm.state_dict) == len(
        _reference_state_dict(tiny_llama)
    )

    odd = np.linspace(1.0, 3.0, 8, dtype=np.float32)
    write_tiny_gguf(tiny_llama, str(tmp_path / "odd.gguf"), "llama", extra_tensors={"rope_freqs.weight": odd})
    with pytest.warns(UserWarning, match="rope_freqs"):
        lm = load_gguf(str(tmp_path), "odd.gguf", dtype=torch.float32, progress=False)
    assert lm.config.rope_parameters["rope_type"] == "default"


def test_load_gguf_mistral_named_llama(tiny_llama, tmp_path):
    original = write_tiny_gguf(tiny_llama, str(tmp_path / "m.gguf"), "llama", name="Mistral 7B Instruct v0.3")
    lm = load_gguf(str(tmp_path), "m.gguf", dtype=torch.float32, progress=False)
    assert lm.arch == "mistral" and lm.config.sliding_window is None
    _assert_same_weights(lm.state_dict, original)


def test_load_gguf_fallback_through_transformers(tiny_models, tmp_path):
    # phi3 (fused qkv / gate_up) has no native mapping: transformers' GGUF loader handles it.
    d = tiny_models("phi3")
    original = write_tiny_gguf(d, str(tmp_path / "p.gguf"), "phi3")
    lm = load_gguf(str(tmp_path), "p.gguf", dtype=torch.float32, progress=False)
    assert lm.arch == "phi3"
    _assert_same_weights(lm.state_dict, original)


def test_load_gguf_unsupported_architecture(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "agentkitfoo")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="agentkitfoo"):
        load_gguf(str(tmp_path), "x.gguf", dtype=torch.float32, progress=False)


def test_load_gguf_missing_file_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="missing.gguf"):
        load_gguf(str(tmp_path), "missing.gguf", dtype=torch.float32, progress=False)
    (tmp_path / "junk.gguf").write_bytes(b"definitely not gguf")
    with pytest.raises(ValueError, match="not a readable GGUF"):
        load_gguf(str(tmp_path), "junk.gguf", dtype=torch.float32, progress=False)


# --------------------------------------------------------------------------- SmolLM2 GGUF (real)


@pytest.fixture(scope="module")
def smollm2_transformers(smollm2):
    """transformers' own GGUF load of SmolLM2: (config, tensors), once per module (~11 s).

    `AutoModelForCausalLM.from_pretrained(gguf_file=...)` needs `accelerate`, which is not a
    dependency; its tensors come from `load_gguf_checkpoint`, called here the same way.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    directory, filename = smollm2
    config = AutoConfig.from_pretrained(directory, gguf_file=filename)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(
        os.path.join(directory, filename), return_tensors=True, model_to_load=skeleton
    )
    return config, parsed["tensors"]


@pytest.fixture(scope="module")
def smollm2_loaded(smollm2):
    directory, filename = smollm2
    t0 = time.monotonic()
    lm = load_gguf(directory, filename, dtype=torch.float32, progress=False)
    lm._test_load_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return lm


@pytest.mark.slow
def test_smollm2_gguf_config_matches_transformers(smollm2_loaded, smollm2_transformers):
    ref, _ = smollm2_transformers
    c = smollm2_loaded.config
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "head_dim",
        "max_position_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "tie_word_embeddings",
        "model_type",
    ):
        assert getattr(c, key) == getattr(ref, key), key
    assert c.rms_norm_eps == ref.rms_norm_eps
    assert c.rope_parameters == ref.rope_parameters
    assert smollm2_loaded.arch == "llama"
    assert smollm2_loaded.max_position_embeddings == 8192
    assert smollm2_loaded.gguf_chat_template.startswith("{% for message in messages %}")
    assert smollm2_loaded.generation_config == {} and smollm2_loaded.tokenizer_config is None
    assert smollm2_loaded._test_load_seconds < 30  # hang guard, not a benchmark


@pytest.mark.slow
def test_smollm2_gguf_weights_equal_transformers(smollm2_loaded, smollm2_transformers):
    _, ref = smollm2_transformers
    sd = smollm2_loaded.state_dict
    assert "lm_head.weight" not in sd and sorted(sd) == sorted(ref)
    handful = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.norm.weight",
    ]
    for k in handful:
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], ref[k]), k
    assert sd["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)
    mismatched = [k for k in ref if not torch.equal(sd[k], ref[k])]
    assert mismatched == []


def test_plain_loaded_json_side_files(tiny_llama):
    lm = load_plain(tiny_llama, dtype=torch.float32, progress=False)
    with open(os.path.join(tiny_llama, "generation_config.json")) as fh:
        assert lm.generation_config == json.load(fh)
    with open(os.path.join(tiny_llama, "tokenizer_config.json")) as fh:
        assert lm.tokenizer_config == json.load(fh)
