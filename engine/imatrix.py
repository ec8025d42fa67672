"""Importance-weighted quantization (llama.cpp's imatrix idea) and the `.cimatrix` file format.

An importance matrix holds, per linear layer, one value per input channel: the mean square of
that channel's activations over real traffic (how much a weight error in that column moves the
output). Quantizers here pick their scales and offsets to minimise the importance-weighted squared
error ``sum_j imp[j] * (w[i, j] - deq[i, j])**2`` instead of the plain one:

- `quantize_int4_g32_weighted`: group-32 affine int4 (the engine's ``int4`` layout). For every
  group a search over ``nstep + 1`` candidate inverse scales around ``15 / (max - min)``; each
  candidate rounds the group, then solves the weighted least-squares fit of scale and offset for
  those levels in closed form; the lowest weighted error wins (llama.cpp's `make_qkx2_quants`).
- `quantize_int8_weighted`: per-row symmetric int8 (the engine's ``int8`` layout). Candidates
  ``(127 + 0.1 k) / max|w|``, k in -9..9, each followed by the weighted least-squares scale.

With a uniform importance both reduce to error-minimising (not min/max) quantizers.

`.cimatrix` (mistral.rs's collected-imatrix file, `CollectedImatrixData`): little-endian; u64
entry count, then per entry u64 key length, the UTF-8 key (a module path such as
``model.layers.0.self_attn.q_proj``), u64 value count, that many f32 values. The values are
``mean square * number of forward calls``, as mistral.rs writes them.

Non-goals: k-quant super-block layouts, llama.cpp's GGUF `.imatrix` format.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

import torch

from agentkit.engine.quant import GROUP

__all__ = [
    "load_cimatrix",
    "quantize_int4_g32_weighted",
    "quantize_int8_weighted",
    "save_cimatrix",
    "weighted_error",
]


def _importance(imp: torch.Tensor | None, k: int) -> torch.Tensor:
    if imp is None:
        return torch.ones(k)
    imp = imp.detach().float().reshape(-1).cpu()
    if imp.numel() != k:
        raise ValueError(f"importance has {imp.numel()} values but the weight has {k} input channels")
    if not torch.isfinite(imp).all() or (imp < 0).any():
        raise ValueError("importance values must be finite and >= 0")
    # a channel never seen active still counts a little: its weights must not go arbitrary
    floor = 1e-3 * float(imp.mean()) if float(imp.mean()) > 0 else 1.0
    return imp + floor


def weighted_error(w: torch.Tensor, deq: torch.Tensor, imp: torch.Tensor | None = None) -> float:
    """``sum imp[j] * (w - deq)[i, j]**2`` (plain squared error when `imp` is None)."""
    d2 = (w.float() - deq.float()).pow(2)
    return float((d2 * imp.float().reshape(1, -1)).sum()) if imp is not None else float(d2.sum())


def quantize_int4_g32_weighted(
    w: torch.Tensor, imp: torch.Tensor | None, *, nstep: int = 20, rdelta: float = 0.1, rmin: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q uint8 [N,K] in 0..15, scale [N,K/32], zero [N,K/32])`` with ``w ~= (q - 8) * scale + zero``,
    chosen per group to minimise the `imp`-weighted error (see the module docstring)."""
    n, k = w.shape
    if k % GROUP:
        raise ValueError(f"int4 needs in_features divisible by {GROUP}, got {k}")
    x = w.detach().float().cpu().reshape(n, k // GROUP, GROUP)
    wt = _importance(imp, k).reshape(1, k // GROUP, GROUP).expand_as(x)
    lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    span = (hi - lo).clamp(min=1e-12)
    wx = wt * x
    sum_w, sum_x, sum_x2 = (s.double() for s in (wt.sum(-1, keepdim=True), wx.sum(-1, keepdim=True),
                                                  (wx * x).sum(-1, keepdim=True)))

    def sums(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        wq = wt * q
        return tuple(t.double() for t in (wq.sum(-1, keepdim=True), (wq * q).sum(-1, keepdim=True),
                                          (wq * x).sum(-1, keepdim=True)))  # type: ignore[return-value]

    def err(s: torch.Tensor, m: torch.Tensor, sum_l: torch.Tensor, sum_l2: torch.Tensor,
            sum_xl: torch.Tensor) -> torch.Tensor:
        # sum w (s q + m - x)^2 expanded, so no [N, K] error tensor per candidate
        return s * s * sum_l2 + 2 * s * m * sum_l - 2 * s * sum_xl + m * m * sum_w - 2 * m * sum_x + sum_x2

    best_s, best_m = (span / 15).double(), lo.double()
    best_e = err(best_s, best_m, *sums(torch.round((x - lo) / (span / 15)).clamp(0, 15)))
    for i in range(nstep + 1):
        q = torch.round((x - lo) * ((rmin + rdelta * i + 15) / span)).clamp(0, 15)
        sum_l, sum_l2, sum_xl = sums(q)
        det = sum_w * sum_l2 - sum_l * sum_l
        ok = det > 1e-12 * sum_w * sum_l2
        det = torch.where(ok, det, torch.ones_like(det))
        s = (sum_w * sum_xl - sum_x * sum_l) / det  # weighted least squares for these levels
        m = (sum_l2 * sum_x - sum_l * sum_xl) / det
        e = err(s, m, sum_l, sum_l2, sum_xl)
        better = ok & (s > 0) & (e < best_e)
        best_s, best_m, best_e = torch.where(better, s, best_s), torch.where(better, m, best_m), \
            torch.where(better, e, best_e)
    best_s, best_m = best_s.float(), best_m.float()
    q = torch.round((x - best_m) / best_s).clamp(0, 15)  # nearest level for the chosen scale
    scale, mn = best_s.squeeze(-1), best_m.squeeze(-1)
    return q.to(torch.uint8).reshape(n, k), scale, mn + 8 * scale


def quantize_int8_weighted(w: torch.Tensor, imp: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q int8 [N,K], scale [N])`` with ``w ~= q * scale`` per row, minimising the weighted error."""
    n, k = w.shape
    x = w.detach().float().cpu()
    wt = _importance(imp, k).reshape(1, k)
    amax = x.abs().amax(1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    best_s = amax / 127
    best_q = torch.round(x / best_s).clamp(-127, 127)
    best_e = (wt * (best_s * best_q - x).pow(2)).sum(1, keepdim=True)
    for i in range(-9, 10):
        q = torch.round(x * ((127 + 0.1 * i) / amax)).clamp(-127, 127)
        den = (wt * q * q).sum(1, keepdim=True)
        s = (wt * q * x).sum(1, keepdim=True) / den.clamp(min=1e-30)
        e = (wt * (s * q - x).pow(2)).sum(1, keepdim=True)
        better = (den > 0) & (s > 0) & (e < best_e)
        best_s, best_q, best_e = torch.where(better, s, best_s), torch.where(better, q, best_q), \
            torch.where(better, e, best_e)
    return best_q.to(torch.int8), best_s.squeeze(1)


def save_cimatrix(path: str | os.PathLike[str], data: Mapping[str, torch.Tensor]) -> None:
    """Write `data` (module key -> values) as a `.cimatrix` file; the name must end in .cimatrix."""
    path = os.fspath(path)
    if not path.endswith(".cimatrix"):
        raise ValueError(f"save_cimatrix path {path!r} must end in .cimatrix")
    parts = [struct.pack("<Q", len(data))]
    for key, values in data.items():
        raw = key.encode("utf-8")
        arr = values.detach().float().reshape(-1).cpu().contiguous()
        parts += [struct.pack("<Q", len(raw)), raw, struct.pack("<Q", arr.numel()), arr.numpy().astype("<f4").tobytes()]
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(b"".join(parts))
    os.replace(tmp, path)


def load_cimatrix(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a `.cimatrix` file; ValueError if it is truncated or malformed."""
    with open(path, "rb") as fh:
        blob = fh.read()
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(blob):
            raise ValueError(f"{os.fspath(path)} is truncated or not a .cimatrix file")
        pos += n
        return blob[pos - n : pos]

    out: dict[str, torch.Tensor] = {}
    (count,) = struct.unpack("<Q", take(8))
    for _ in range(count):
        (klen,) = struct.unpack("<Q", take(8))
        key = take(klen).decode("utf-8")
        (vlen,) = struct.unpack("<Q", take(8))
        out[key] = torch.frombuffer(bytearray(take(4 * vlen)), dtype=torch.float32).clone()
    return out
