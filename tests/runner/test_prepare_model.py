"""The model-load seam: `engine_prepare_model` sees the loaded, not yet quantized model.

A plugin wrapping every `layer.mlp` with an identity leaves greedy output unchanged (and the
wrappers are really on the decode path); one adding a known delta to the last layer's MLP output
changes the logits by exactly what the unmodified model's hidden states predict.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agentkit import ChatCompletionRequest, Runner, Which, hookimpl
from agentkit.config import RunnerConfig
from agentkit.engine.models.linear import LoadedLinear
from agentkit.engine.quant import QuantTensor
from agentkit.plugins.speculative import SpeculativePlugin


class Wrap(nn.Module):
    """`inner(x) + delta` (identity when `delta` is None); counts calls."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.delta, self.calls = inner, None, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = self.inner(x)
        return y if self.delta is None else y + self.delta


class WrapMLPs:
    """Wraps every decoder layer's `mlp`; records what it saw at hook time."""

    def __init__(self) -> None:
        self.model, self.config, self.seen_linears = None, None, []

    @hookimpl
    def engine_prepare_model(self, model, config):
        self.model, self.config = model, config
        for layer in model.layers:
            self.seen_linears.append(type(layer.mlp.gate_up))
            layer.mlp = Wrap(layer.mlp)


class Record:
    """Keeps the model; scores IDS inside the hook (through the not yet quantized linears)."""

    @hookimpl
    def engine_prepare_model(self, model):
        self.model, self.before = model, model.logits_for(IDS)


IDS = list(range(3, 40))


def greedy(r: Runner, n: int = 16) -> str:
    req = ChatCompletionRequest(messages=[{"role": "user", "content": "Name three colours."}], model="default",
                                max_tokens=n, temperature=0.0, ignore_eos=True)
    return r.send_chat_completion_request(req).choices[0].message.content


def last_hidden(model: nn.Module, ids: list[int]) -> torch.Tensor:
    """The residual stream after the last decoder layer (before the final norm), every position."""
    out = {}
    handle = model.layers[-1].register_forward_hook(lambda mod, args, res: out.setdefault("h", res))
    try:
        model.logits_for(ids)
    finally:
        handle.remove()
    return out["h"]


def check_seam(which: Which, tol: float) -> tuple[WrapMLPs, torch.Tensor]:
    rec, wrap = Record(), WrapMLPs()
    off = SpeculativePlugin(mode="off")  # counts decode steps: one MLP call per step, no calibration passes
    with Runner(which, progress=False, plugins=[rec, off]) as plain, \
            Runner(which, progress=False, plugins=[wrap, SpeculativePlugin(mode="off")]) as r:
        assert isinstance(wrap.config, RunnerConfig) and wrap.config.model_id == plain.list_models()[0]
        assert wrap.seen_linears and all(t is LoadedLinear for t in wrap.seen_linears)  # before quantization
        wrappers = [layer.mlp for layer in wrap.model.layers]
        assert all(isinstance(w, Wrap) for w in wrappers)
        assert greedy(r) == greedy(plain)
        assert all(w.calls == 16 for w in wrappers)  # one prompt pass, then 15 decode steps

        ids = IDS
        h = last_hidden(rec.model, ids)
        scale = h.float().pow(2).mean().sqrt()  # the residual stream's RMS
        delta = torch.linspace(-2.0, 2.0, h.shape[-1], dtype=h.dtype) * scale
        m = rec.model
        with torch.inference_mode():
            expect = m.lm_head(F.rms_norm(h + delta, (h.shape[-1],), m.norm, m.eps))
            wrappers[-1].delta = delta
            got = wrap.model.logits_for(ids)
            wrappers[-1].delta = None
            base = m.logits_for(ids)
        assert (got - base).abs().max() > 50 * tol  # the delta really moves the logits
        assert torch.allclose(got, expect, atol=tol, rtol=0), (got - expect).abs().max()
        assert greedy(r) == greedy(plain)  # identity again once the delta is removed
    return wrap, h


def test_tiny_safetensors_mlp_seam(tiny_llama):
    check_seam(Which.Plain(tiny_llama), tol=1e-5)  # fp32: only the order of two adds differs


def test_hook_sees_a_runnable_dense_model_that_quantization_keeps(tiny_llama):
    rec = Record()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[rec]):
        assert type(rec.model.layers[0].mlp.down).__name__ == "DenseLinear"  # swapped after the hook
        assert torch.allclose(rec.model.logits_for(IDS), rec.before, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_smollm2_gguf_mlp_seam_sees_packed_blocks(smollm2):
    d, f = smollm2
    # packed kernels round activations and logits to bf16: one ulp of a logit in [16, 32) is 0.125
    wrap, _ = check_seam(Which.GGUF(d, f, None), tol=0.125)
    inner = wrap.model.layers[0].mlp.inner
    assert inner.gate_up.kind == "int4" and inner.down.kind == "int4"  # packed after the plugin ran
    assert wrap.model.layers[0].self_attn.qkv.kind == "int4" and wrap.model.lm_head.kind == "int8"


def test_gguf_plugin_sees_quant_tensor_parts(smollm2):
    seen = {}

    class Peek:
        @hookimpl
        def engine_prepare_model(self, model):
            lin = model.layers[0].mlp.gate_up
            seen["parts"] = [type(p) for p in lin.parts]
            seen["dense"] = lin.dense_weight().shape
            seen["packed"] = lin.is_packed

    d, f = smollm2
    with Runner(Which.GGUF(d, f, None), progress=False, plugins=[Peek()]):
        pass
    assert seen["parts"] == [QuantTensor, QuantTensor] and seen["packed"]
    assert seen["dense"] == (2 * 1536, 576)


def test_transformers_fallback_model_is_prepared_once(tiny_models):
    calls = []

    class Count:
        @hookimpl
        def engine_prepare_model(self, model):
            calls.append(type(model).__name__)

    with Runner(Which.Plain(tiny_models("phi3")), progress=False, plugins=[Count()]) as r:
        model_id = r.list_models()[0]
        assert calls == ["Phi3ForCausalLM"]
        r.unload_model(model_id)
        r.reload_model(model_id)
    assert calls == ["Phi3ForCausalLM", "Phi3ForCausalLM"]  # the load, then the reload
