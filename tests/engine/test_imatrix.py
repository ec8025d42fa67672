"""Importance-weighted quantizers and the .cimatrix format."""

from __future__ import annotations

import pytest
import torch

from agentkit.engine.imatrix import (
    load_cimatrix,
    quantize_int4_g32_weighted,
    quantize_int8_weighted,
    save_cimatrix,
    weighted_error,
)
from agentkit.engine.quant import quantize_int4_g32, quantize_int8_per_channel


def _int4(q, s, z):
    n, k = q.shape
    return ((q.reshape(n, k // 32, 32).float() - 8) * s[..., None] + z[..., None]).reshape(n, k)


@pytest.fixture(scope="module")
def layer():
    """A synthetic linear layer and a skewed importance (a few channels matter 100x more)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=g)
    imp = torch.rand(256, generator=g) ** 4 * 100
    return w, imp


def test_int4_importance_weighting_lowers_the_weighted_error(layer):
    w, imp = layer
    plain = weighted_error(w, _int4(*quantize_int4_g32(w)), imp)
    uniform = weighted_error(w, _int4(*quantize_int4_g32_weighted(w, None)), imp)
    weighted = weighted_error(w, _int4(*quantize_int4_g32_weighted(w, imp)), imp)
    # the search alone beats min/max; the importance must pay off on top of it
    assert uniform < plain
    assert weighted < 0.9 * uniform, (plain, uniform, weighted)


def test_int4_uniform_search_minimises_the_plain_error(layer):
    w, imp = layer
    assert weighted_error(w, _int4(*quantize_int4_g32_weighted(w, None))) < \
        weighted_error(w, _int4(*quantize_int4_g32_weighted(w, imp)))
    q, s, z = quantize_int4_g32_weighted(w, imp)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15 and s.shape == z.shape == (64, 8)


def test_int8_importance_weighting_lowers_the_weighted_error(layer):
    w, imp = layer
    q, s = quantize_int8_per_channel(w)
    plain = weighted_error(w, q.float() * s[:, None], imp)
    q, s = quantize_int8_weighted(w, None)
    uniform = weighted_error(w, q.float() * s[:, None], imp)
    q, s = quantize_int8_weighted(w, imp)
    weighted = weighted_error(w, q.float() * s[:, None], imp)
    assert q.dtype == torch.int8 and weighted < uniform <= plain


def test_bad_importance_is_rejected(layer):
    w, _ = layer
    with pytest.raises(ValueError, match="256 input channels"):
        quantize_int4_g32_weighted(w, torch.ones(255))
    with pytest.raises(ValueError, match="finite and >= 0"):
        quantize_int8_weighted(w, -torch.ones(256))


def test_cimatrix_round_trip_and_errors(tmp_path):
    data = {"model.layers.0.self_attn.q_proj": torch.tensor([1.0, 2.5, 3.0]), "k": torch.zeros(2)}
    path = tmp_path / "t.cimatrix"
    save_cimatrix(path, data)
    blob = path.read_bytes()
    assert int.from_bytes(blob[:8], "little") == 2  # mistral.rs layout: u64 count first
    back = load_cimatrix(path)
    assert back.keys() == data.keys() and all(torch.equal(back[k], data[k]) for k in data)
    with pytest.raises(ValueError, match="must end in .cimatrix"):
        save_cimatrix(tmp_path / "t.imatrix", data)
    path.write_bytes(blob[:-3])
    with pytest.raises(ValueError, match="truncated"):
        load_cimatrix(path)
