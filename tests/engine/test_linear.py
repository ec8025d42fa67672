"""LoadedLinear (weights as loaded) and quantize_model (the Linear swap)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agentkit.engine.models.linear import LoadedLinear, quantize_model, resolve_linear_mode

CPU = torch.device("cpu")


def test_loaded_linear_concatenates_parts_and_bias():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g)
    bias = torch.randn(8, generator=g)
    lin = LoadedLinear([a, b], bias, torch.float32)
    x = torch.randn(4, 8, generator=g)
    assert lin.out_features == 8 and lin.in_features == 8 and not lin.is_packed
    assert torch.equal(lin.dense_weight(), torch.cat([a, b]))
    assert torch.allclose(lin(x), x @ torch.cat([a, b]).T + bias)


def test_loaded_linear_rejects_bad_parts():
    with pytest.raises(TypeError, match="2-D"):
        LoadedLinear([torch.zeros(4)], None, torch.float32)
    with pytest.raises(ValueError, match="in_features"):
        LoadedLinear([torch.zeros(2, 4), torch.zeros(2, 5)], None, torch.float32)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.block = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
        self.fused = LoadedLinear([torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)],
                                  torch.randn(32, generator=g), torch.float32)
        self.lm_head = LoadedLinear([torch.randn(64, 32, generator=g)], None, torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.fused(self.block(x)))


def test_quantize_model_swaps_nested_linears_and_keeps_outputs():
    net = Net()
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = net(x)
    assert quantize_model(net, mode="dense", device=CPU, dtype=torch.float32) == 3  # head, nested, fused
    kinds = [type(m).__name__ for m in (net.block[0], net.fused, net.lm_head)]
    assert kinds == ["DenseLinear"] * 3
    assert not any(isinstance(m, (nn.Linear, LoadedLinear)) for m in net.modules())
    assert torch.allclose(net(x), before, atol=1e-5)


def test_quantize_model_int8_and_bad_mode():
    net = Net()
    quantize_model(net, mode="int8", device=CPU, dtype=torch.float32)
    assert net.fused.kind == "int8" and net.lm_head.kind == "int8"
    with pytest.raises(ValueError, match="mode must be one of"):
        quantize_model(Net(), mode="fp8", device=CPU, dtype=torch.float32)


def test_auto_never_quantizes_dense_weights():
    dense = [torch.zeros(32, 32)]
    assert resolve_linear_mode("auto", dense, CPU) == "dense"
    assert resolve_linear_mode("int4", dense, CPU) == "int4"
    net = Net()
    quantize_model(net, mode="auto", device=CPU, dtype=torch.float32)
    assert net.fused.kind == "dense" and net.lm_head.kind == "dense"
