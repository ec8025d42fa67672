"""Tests for weight-only quantized linears (`agentkit.engine.quant`) and `load_gguf(keep_quantized=True)`.

Q4_0/Q4_1/Q4_K blocks are checked against `gguf.quants.dequantize` (the loader's dense path) on
synthetic blocks (random bytes with finite fp16 scales, or `gguf.quants.quantize`) and on real
SmolLM2 blocks read with the loader's own reader; packed matmuls are checked against dense matmuls
with fp32 activations (exact up to summation order) and with the default bf16 activations (within
bf16 rounding). A tiny llama GGUF with mixed block types is written here to check the loader.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize, quantize

from agentkit.engine import quant
from agentkit.engine.loading.loader import load_gguf
from agentkit.engine.models import kernels
from agentkit.engine.models.kernels import build_linear, build_lm_head
from agentkit.engine.quant import AUTO_SWITCH_M, QuantTensor, quantize_int4_g32, quantize_int8_per_channel
from agentkit.errors import ConfigError
from agentkit.testing import write_tiny_gguf

CPU = torch.device("cpu")
BF16_REL = 2.0**-7  # a few bf16 roundings (activation, scale, zero, output), relative


def _random_blocks(qtype: QT, rows: int, cols: int, seed: int = 0) -> QuantTensor:
    """Random valid blocks: random quant bytes, fp16 scale fields set to small finite values."""
    rng = np.random.default_rng(seed)
    block, nbytes = quant.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, nbytes), dtype=np.uint8)
    n_f16 = {QT.Q4_0: 1, QT.Q4_1: 2, QT.Q4_K: 2, QT.Q8_0: 1}[qtype]
    f16 = rng.uniform(-0.05, 0.05, size=(rows, cols // block, n_f16)).astype(np.float16)
    if qtype == QT.Q4_K:
        f16 = np.abs(f16)  # d and dmin are non-negative in real files (either sign works here)
    raw[..., : 2 * n_f16] = f16.view(np.uint8).reshape(rows, cols // block, 2 * n_f16)
    return QuantTensor(torch.from_numpy(raw.reshape(rows, -1)), qtype, (rows, cols))


def _ref(qt: QuantTensor) -> torch.Tensor:
    return torch.from_numpy(dequantize(qt.data.numpy(), qt.qtype))


def _int4_module(weights, act: torch.dtype):
    q, s, z = kernels._int4_parts(weights)
    mod = kernels.Int4Linear.pack(q, s, z, None, CPU, act)
    assert mod is not None
    return mod


def _close(got: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    err = (got.double() - ref.double()).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= rel * scale, f"max error {err:.3g} > {rel:g} x {scale:.3g}"


@pytest.fixture
def fresh_probes(monkeypatch):
    """Empty op-probe and warning caches for this test only."""
    monkeypatch.setattr(kernels, "_probe_cache", {})
    monkeypatch.setattr(kernels, "_warned", set())


# --------------------------------------------------------------------------- QuantTensor blocks


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_1, QT.Q4_K])
def test_int4_groups_reproduce_gguf_dequantize(qtype):
    qt = _random_blocks(qtype, 48, 512)
    q, s, z = qt.int4_groups()
    assert q.dtype == torch.uint8 and q.shape == (48, 512) and int(q.min()) >= 0 and int(q.max()) <= 15
    assert s.shape == z.shape == (48, 16)
    _close(quant.dequant_int4(q, s, z), _ref(qt), 1e-6)
    assert torch.equal(qt.dequantize(), _ref(qt))


def test_int4_groups_of_gguf_quantized_q4_1():
    w = np.random.default_rng(1).standard_normal((32, 96)).astype(np.float32)
    qt = QuantTensor(torch.from_numpy(quantize(w, QT.Q4_1)), QT.Q4_1, (32, 96))
    _close(quant.dequant_int4(*qt.int4_groups()), _ref(qt), 1e-6)
    _close(qt.dequantize(), torch.from_numpy(w), 0.1)  # it really is w, quantized


def test_quant_tensor_validation():
    data = torch.zeros(4, 40, dtype=torch.uint8)
    assert QuantTensor(data, QT.Q4_1, (4, 64)).nbytes == 160
    with pytest.raises(ValueError, match="uint8"):
        QuantTensor(data, QT.Q4_1, (4, 96))
    with pytest.raises(ValueError, match="multiple"):
        QuantTensor(data, QT.Q4_1, (4, 50))
    with pytest.raises(ValueError, match="not exact int4"):
        _random_blocks(QT.Q8_0, 4, 64).int4_groups()


# --------------------------------------------------------------------------- packed matmuls


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_1, QT.Q4_K])
def test_int4_matmul_equals_dequantized_dense(qtype):
    qt = _random_blocks(qtype, 64, 256, seed=3)
    w = _ref(qt)
    x = torch.randn(5, 256, generator=torch.Generator().manual_seed(0))
    ref = x.double() @ w.double().t()
    _close(_int4_module([qt], torch.float32)(x), ref, 1e-5)  # fp32 activations: exact form
    mod = build_linear([qt], None, dtype=torch.float32, device=CPU, mode="int4")
    assert mod.kind == "int4"
    y = mod(x)
    assert y.dtype == torch.float32 and y.shape == (5, 64)
    _close(y, ref, BF16_REL)  # default bf16 activations


def test_int8_within_per_channel_bound():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(96, 160, generator=gen) * torch.linspace(0.01, 1.0, 96)[:, None]
    x = torch.randn(7, 160, generator=gen)
    q, s = quantize_int8_per_channel(w)
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-7).all()
    bound = x.abs() @ (s[:, None] / 2).expand_as(w).t()  # sum_k |x_k| * scale_n / 2
    exact = kernels.Int8Linear(q, s, None, CPU, torch.float32)(x)
    assert ((exact - x @ w.t()).abs() <= bound + 1e-4).all()
    y = build_linear([w], None, dtype=torch.float32, device=CPU, mode="int8")(x)
    slack = BF16_REL * (x.abs() @ w.abs().t())  # bf16 activations
    err = (y - x @ w.t()).abs()
    assert (err <= bound + slack).all()
    assert err.max() > 0  # really quantized


def test_quantize_int4_g32_round_trip_bound():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(2))
    w[0, :32] = 0.25  # a constant group
    q, s, z = quantize_int4_g32(w)
    back = quant.dequant_int4(q, s, z)
    assert torch.allclose(back[0, :32], w[0, :32])
    assert ((back - w).abs().reshape(32, 4, 32) <= s[..., None] / 2 + 1e-6).all()


@pytest.mark.parametrize("mode", ["dense", "int8", "int4"])
def test_fused_concatenation_order(mode):
    gen = torch.Generator().manual_seed(5)
    qw, kw, vw = _random_blocks(QT.Q4_1, 64, 128, 1), _random_blocks(QT.Q4_1, 32, 128, 2), torch.randn(32, 128, generator=gen)
    biases = [torch.randn(64, generator=gen), torch.randn(32, generator=gen), torch.randn(32, generator=gen)]
    x = torch.randn(3, 128, generator=gen)
    fused = build_linear([qw, kw, vw], biases, dtype=torch.float32, device=CPU, mode=mode)
    parts = [
        build_linear([w], [b], dtype=torch.float32, device=CPU, mode=mode)(x)
        for w, b in zip((qw, kw, vw), biases)
    ]
    assert fused.out_features == 128
    torch.testing.assert_close(fused(x), torch.cat(parts, dim=-1), rtol=1e-5, atol=1e-5)
    dense = [_ref(qw), _ref(kw), vw]
    if mode == "int8":  # the weights the packed kernel really holds
        dense = [q.float() * s[:, None] for q, s in map(quantize_int8_per_channel, dense)]
    elif mode == "int4":  # the Q4_1 blocks exactly, the dense part quantized
        dense[2] = quant.dequant_int4(*quantize_int4_g32(vw))
    ref = torch.cat([x.double() @ w.double().t() + b for w, b in zip(dense, biases)], dim=-1)
    _close(fused(x), ref, 1e-6 if mode == "dense" else BF16_REL)


def test_auto_on_cpu_routes_by_batch_rows():
    qts = [_random_blocks(QT.Q4_1, 96, 256, 7), _random_blocks(QT.Q4_1, 96, 256, 8)]
    mod = build_linear(qts, None, dtype=torch.float32, device=CPU, mode="auto")
    assert mod.kind == "auto" and mod.small.kind == "int4" and mod.large.kind == "dense"
    assert mod.threshold == AUTO_SWITCH_M["int4"]
    assert mod.large.weight.dtype == kernels.cpu_batch_dtype(torch.float32)
    w = torch.cat([_ref(q) for q in qts])
    gen = torch.Generator().manual_seed(0)
    for m in (1, mod.threshold - 1, mod.threshold, 3 * mod.threshold):
        x = torch.randn(m, 256, generator=gen)
        path = mod.small if m < mod.threshold else mod.large
        y = mod(x)
        assert torch.equal(y, path(x)), m
        _close(y, x.double() @ w.double().t(), BF16_REL)  # both paths agree within bf16 rounding
    # leading dims are flattened for the row count
    x3 = torch.randn(2, 1, 256, generator=gen)
    assert torch.equal(mod(x3), mod.small(x3)) and mod(x3).shape == (2, 1, 192)
    assert mod(torch.randn(0, 256)).shape == (0, 192)


def test_auto_choices_by_weight_type():
    q41, q8 = _random_blocks(QT.Q4_1, 32, 64), _random_blocks(QT.Q8_0, 32, 64)
    mixed = build_linear([q41, q8], None, dtype=torch.float32, device=CPU)
    assert mixed.small.kind == "int8" and mixed.threshold == AUTO_SWITCH_M["int8"]
    plain = build_linear([torch.randn(32, 64)], None, dtype=torch.float32, device=CPU)
    assert plain.kind == "dense"  # auto never quantizes an unquantized checkpoint
    x = torch.randn(2, 64)
    _close(mixed(x), x @ torch.cat([_ref(q41), _ref(q8)]).t(), 0.05)


def test_lm_head_auto_shares_the_tied_embedding():
    emb = torch.nn.Parameter(_ref(_random_blocks(QT.Q8_0, 256, 64, 4)), requires_grad=False)
    head = build_lm_head(emb, dtype=torch.float32, device=CPU)
    assert head.kind == "auto" and head.small.kind == "int8" and head.threshold == AUTO_SWITCH_M["head"]
    if kernels.cpu_batch_dtype(torch.float32) == torch.float32:
        assert head.large.weight.data_ptr() == emb.data_ptr()  # no copy of a tied fp32 embedding
        assert not isinstance(head.large.weight, torch.nn.Parameter)
    x = torch.randn(3, 64)
    _close(head(x), x @ emb.t(), 0.02)
    dense = build_lm_head(emb, dtype=torch.float32, device=CPU, mode="dense")
    assert dense.kind == "dense" and torch.equal(dense(x), x @ emb.t())


def test_dense_mode_uses_dtype_and_casts_back():
    qt = _random_blocks(QT.Q4_1, 32, 64)
    mod = build_linear([qt], [torch.zeros(32)], dtype=torch.bfloat16, device=CPU, mode="dense")
    assert mod.weight.dtype == torch.bfloat16 and torch.equal(mod.weight, qt.dequantize(torch.bfloat16))
    assert mod(torch.randn(2, 64)).dtype == torch.float32


def test_dequantize_state_dict():
    qt, t = _random_blocks(QT.Q4_1, 32, 64), torch.randn(3)
    out = kernels.dequantize_state_dict({"a": qt, "b": t}, torch.bfloat16)
    assert torch.equal(out["a"], qt.dequantize(torch.bfloat16)) and out["b"] is t


def test_bad_arguments():
    w = torch.randn(32, 64)
    with pytest.raises(ValueError, match="mode must be one of"):
        build_linear([w], None, dtype=torch.float32, device=CPU, mode="int3")
    with pytest.raises(ValueError, match="same in_features"):
        build_linear([w, torch.randn(32, 32)], None, dtype=torch.float32, device=CPU)
    with pytest.raises(TypeError, match="non-empty list"):
        build_linear(w, None, dtype=torch.float32, device=CPU)
    with pytest.raises(ValueError, match="one bias tensor per weight"):
        build_linear([w], [], dtype=torch.float32, device=CPU)


def test_missing_packed_op_falls_back_to_dense_once(monkeypatch, fresh_probes):
    real = kernels._aten_op
    monkeypatch.setattr(kernels, "_aten_op", lambda name: None if "int4pack" in name else real(name))
    qt = _random_blocks(QT.Q4_1, 32, 64)
    with pytest.warns(RuntimeWarning, match="int4 weight-only matmul is unavailable"):
        mod = build_linear([qt], None, dtype=torch.float32, device=CPU, mode="int4")
    assert mod.kind == "dense" and torch.equal(mod.weight, qt.dequantize())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per process, not per layer
        auto = build_linear([qt], None, dtype=torch.float32, device=CPU, mode="auto")
    assert auto.kind == "dense"
    assert build_linear([qt], None, dtype=torch.float32, device=CPU, mode="int8").kind == "int8"


def test_wrong_packed_result_falls_back(monkeypatch, fresh_probes):
    real = kernels._aten_op

    def broken(name):
        op = real(name)
        if name == "_weight_int8pack_mm":
            return lambda x, w, s: op(x, w, s) * 2
        return op

    monkeypatch.setattr(kernels, "_aten_op", broken)
    with pytest.warns(RuntimeWarning, match="differs from the dense formula"):
        mod = build_linear([torch.randn(32, 64)], None, dtype=torch.float32, device=CPU, mode="int8")
    assert mod.kind == "dense"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_int4_and_auto():  # pragma: no cover - no GPU in CI
    cuda = torch.device("cuda")
    qt = _random_blocks(QT.Q4_1, 64, 256)
    x = torch.randn(4, 256, device=cuda, dtype=torch.bfloat16)
    ref = x.double() @ _ref(qt).to(cuda).double().t()
    mod = build_linear([qt], None, dtype=torch.bfloat16, device=cuda, mode="int4")
    _close(mod(x), ref, 0.02)
    assert build_linear([qt], None, dtype=torch.bfloat16, device=cuda).kind == "dense"


# --------------------------------------------------------------------------- loader


MIXED_TYPES = {"attn_q": QT.Q4_1, "attn_k": QT.Q4_1, "attn_v": QT.Q4_0, "attn_output": QT.Q8_0,
               "ffn_gate": QT.Q4_1, "ffn_up": QT.Q5_0, "ffn_down": QT.Q4_1, "token_embd": QT.Q8_0}


def test_load_gguf_keep_quantized_matches_dense(tiny_llama, tmp_path):
    write_tiny_gguf(tiny_llama, str(tmp_path / "m.gguf"), qtype=MIXED_TYPES)  # q/k permuted as llama.cpp does
    dense = load_gguf(str(tmp_path), "m.gguf", dtype=torch.float32, progress=False)
    kept = load_gguf(str(tmp_path), "m.gguf", dtype=torch.float32, progress=False, keep_quantized=True)
    assert sorted(kept.state_dict) == sorted(dense.state_dict)
    sd = kept.state_dict
    a = "model.layers.0.self_attn."
    assert sd[a + "q_proj.weight"].qtype == QT.Q4_1 and sd[a + "q_proj.weight"].shape == (64, 64)
    assert sd[a + "k_proj.weight"].shape == dense.state_dict[a + "k_proj.weight"].shape
    assert sd[a + "v_proj.weight"].qtype == QT.Q4_0 and sd[a + "o_proj.weight"].qtype == QT.Q8_0
    assert isinstance(sd["model.layers.0.mlp.up_proj.weight"], torch.Tensor)  # Q5_0: not kept
    assert isinstance(sd["model.embed_tokens.weight"], torch.Tensor)  # the embedding stays dense
    assert isinstance(sd["model.norm.weight"], torch.Tensor)
    n_kept = 0
    for k, v in sd.items():
        if isinstance(v, QuantTensor):
            n_kept += 1
            assert torch.equal(v.dequantize(torch.float32), dense.state_dict[k]), k  # q/k un-permuted too
            assert torch.equal(v.dequantize(torch.bfloat16), dense.state_dict[k].bfloat16()), k
        else:
            assert torch.equal(v, dense.state_dict[k]), k
    assert n_kept == 2 * 6
    # the fused q/k/v of the kept blocks equals the dense fused matmul
    x = torch.randn(2, 64)
    names = [a + p + "_proj.weight" for p in "qkv"]
    fused = build_linear([sd[n] for n in names], None, dtype=torch.float32, device=CPU, mode="dense")
    torch.testing.assert_close(fused(x), x @ torch.cat([dense.state_dict[n] for n in names]).t())
    with pytest.raises(ConfigError, match="keep_quantized"):
        load_gguf(str(tmp_path), "m.gguf", dtype=torch.float32, progress=False, keep_quantized="yes")


# --------------------------------------------------------------------------- SmolLM2 blocks (real)


@pytest.fixture(scope="module")
def smollm2_blocks(smollm2):
    from agentkit.engine.loading.gguf import open_reader, tensor_to_quant

    reader = open_reader(os.path.join(*smollm2))
    wanted = ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.3.ffn_down.weight")
    return {t.name: tensor_to_quant(t) for t in reader.tensors if t.name in wanted}


@pytest.mark.slow
def test_smollm2_q4_1_blocks_int4(smollm2_blocks):
    down = smollm2_blocks["blk.3.ffn_down.weight"]
    assert down.qtype == QT.Q4_1 and down.shape == (576, 1536)
    w = down.dequantize()
    _close(quant.dequant_int4(*down.int4_groups()), w, 1e-6)
    x = torch.randn(4, 1536, generator=torch.Generator().manual_seed(0))
    ref = x.double() @ w.double().t()
    _close(_int4_module([down], torch.float32)(x), ref, 1e-5)
    _close(build_linear([down], None, dtype=torch.float32, device=CPU, mode="int4")(x), ref, BF16_REL)
    qkv = [smollm2_blocks[f"blk.0.attn_{p}.weight"] for p in "qkv"]
    mod = build_linear(qkv, None, dtype=torch.float32, device=CPU, mode="auto")
    assert mod.out_features == 960 and mod.small.kind == "int4"
    wq = torch.cat([q.dequantize() for q in qkv])
    for m in (1, 64):
        x = torch.randn(m, 576)
        _close(mod(x), x.double() @ wq.double().t(), BF16_REL)


@pytest.mark.slow
def test_smollm2_keep_quantized_dequantizes_to_the_dense_load(smollm2):
    kept = load_gguf(*smollm2, dtype=torch.float32, progress=False, keep_quantized=True)
    dense = load_gguf(*smollm2, dtype=torch.float32, progress=False)
    sd = kept.state_dict
    assert sorted(sd) == sorted(dense.state_dict)
    quantized = {k: v for k, v in sd.items() if isinstance(v, QuantTensor)}
    assert len(quantized) == 210 and {v.qtype for v in quantized.values()} == {QT.Q4_1}
    assert isinstance(sd["model.embed_tokens.weight"], torch.Tensor)  # the Q8_0 embedding: dense
    assert sum(v.nbytes for v in quantized.values()) == 30 * 3538944 // 32 * 20
    mismatched = [k for k, v in quantized.items() if not torch.equal(v.dequantize(), dense.state_dict[k])]
    assert mismatched == []
