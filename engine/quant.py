"""GGUF weight blocks and the int4/int8 weight quantization math of the native engine.

Scope: `QuantTensor` (the raw GGUF blocks of one 2-D weight, rows are HF output rows, q/k already
un-permuted, as `read_gguf(keep_quantized=True)` returns them; `dequantize(dtype)` equals the
loader's dense tensor bit for bit), the group-32 int4 and per-channel int8 quantizers and their
dequantization, the mode names and the GGUF types kept packed.

Non-goals: the linear layers that run these weights (`agentkit.engine.models.kernels`, which also
records the kernel measurements), activation quantization, GGUF types other than
Q4_0/Q4_1/Q4_K/Q8_0 kept packed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agentkit.engine.shadowed_imports import ensure_package

ensure_package("gguf")  # before any `from gguf import`: a user's gguf.py may shadow the package
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402

__all__ = [
    "AUTO_SWITCH_M",
    "GROUP",
    "INT4_EXACT_TYPES",
    "KEEP_QUANTIZED_TYPES",
    "MODES",
    "QuantTensor",
    "dequant_int4",
    "quantize_int4_g32",
    "quantize_int8_per_channel",
]

MODES = ("auto", "dense", "int8", "int4")
GROUP = 32  # int4 group size (one GGUF Q4_0/Q4_1 block, one Q4_K sub-block)

#: GGUF block types the loader keeps packed with ``keep_quantized=True``.
KEEP_QUANTIZED_TYPES = frozenset(
    {GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q8_0}
)
#: Types whose blocks are exactly group-32 affine int4 (``w = (q - 8) * scale + zero``).
INT4_EXACT_TYPES = frozenset({GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q4_K})

#: Batch rows (M) from which ``auto`` on CPU uses the dense copy instead of the packed one, per
#: packed kind; chosen from bench/linears.py (see `agentkit.engine.models.kernels`).
AUTO_SWITCH_M: dict[str, int] = {"int4": 24, "int8": 16, "head": 16}


# --------------------------------------------------------------------------- QuantTensor


@dataclass(eq=False)
class QuantTensor:
    """Raw GGUF blocks of one 2-D weight: ``data`` uint8 ``[rows, bytes_per_row]``, HF ``shape``.

    ``shape`` is the logical ``(out_features, in_features)``; row ``i`` of ``data`` holds the
    blocks of output row ``i`` (in HF order: llama.cpp's q/k permutation is already undone).
    """

    data: torch.Tensor
    qtype: GGMLQuantizationType
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        self.qtype = GGMLQuantizationType(self.qtype)
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        block, nbytes = GGML_QUANT_SIZES[self.qtype]
        rows, cols = self.shape
        if cols % block:
            raise ValueError(f"QuantTensor: in_features {cols} is not a multiple of the {self.qtype.name} block {block}")
        want = (rows, cols // block * nbytes)
        if self.data.dtype != torch.uint8 or tuple(self.data.shape) != want:
            raise ValueError(
                f"QuantTensor data must be uint8 {want} for {self.qtype.name} {self.shape},"
                f" got {self.data.dtype} {tuple(self.data.shape)}"
            )

    @property
    def ndim(self) -> int:
        """Always 2 (a linear weight)."""
        return 2

    @property
    def nbytes(self) -> int:
        """Bytes of block data."""
        return self.data.numel()

    def dequantize(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Dense ``[out, in]`` tensor, identical to the loader's non-quantized path."""
        from gguf.quants import dequantize

        arr = dequantize(self.data.cpu().numpy(), self.qtype)
        out = torch.from_numpy(arr).reshape(self.shape)
        if out.dtype != dtype:
            out = out.to(dtype)
        return out if device is None else out.to(device)

    def int4_groups(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact group-32 form of Q4_0/Q4_1/Q4_K: ``(q uint8 [N,K] in 0..15, scale, zero)``.

        ``scale``/``zero`` are float32 ``[N, K/32]``; ``w = (q - 8) * scale + zero``.
        """
        n, k = self.shape
        d = self.data.cpu()
        if self.qtype in (GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1):
            per = 18 if self.qtype == GGMLQuantizationType.Q4_0 else 20
            b = d.reshape(n, k // 32, per)
            scale = _f16(b[..., 0:2])
            q = _nibbles(b[..., per - 16 :])  # elements 0..15 low nibbles, 16..31 high
            if self.qtype == GGMLQuantizationType.Q4_0:
                zero = torch.zeros_like(scale)  # w = d * (q - 8)
            else:
                zero = _f16(b[..., 2:4]) + 8 * scale  # w = d * q + m
            return q.reshape(n, k), scale, zero
        if self.qtype == GGMLQuantizationType.Q4_K:
            b = d.reshape(n, k // 256, 144)
            dd, dmin = _f16(b[..., 0:2])[..., None], _f16(b[..., 2:4])[..., None]
            s = b[..., 4:16].reshape(n, k // 256, 3, 4)
            lo, mid, hi = s[..., 0, :], s[..., 1, :], s[..., 2, :]
            sc = torch.cat([lo & 0x3F, (hi & 0x0F) | ((lo >> 2) & 0x30)], dim=-1)  # [n, nb, 8]
            mn = torch.cat([mid & 0x3F, (hi >> 4) | ((mid >> 2) & 0x30)], dim=-1)
            scale = (dd * sc.float()).reshape(n, k // 32)
            zero = -(dmin * mn.float()).reshape(n, k // 32) + 8 * scale  # w = d*sc*q - dmin*m
            q = _nibbles(b[..., 16:].reshape(n, k // 256 * 4, 32))  # sub-block 2j low, 2j+1 high
            return q.reshape(n, k), scale, zero
        raise ValueError(
            f"{self.qtype.name} blocks are not exact int4 groups; use {sorted(t.name for t in INT4_EXACT_TYPES)}"
        )

    def __repr__(self) -> str:
        return f"QuantTensor({self.qtype.name}, shape={self.shape}, {self.nbytes} bytes)"


def _f16(two_bytes: torch.Tensor) -> torch.Tensor:
    """float32 ``[...]`` from a uint8 ``[..., 2]`` little-endian float16 field."""
    return two_bytes.contiguous().view(torch.float16).squeeze(-1).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 2m]``: the low nibbles of ``qs [..., m]``, then the high nibbles."""
    out = torch.empty(*qs.shape[:-1], 2 * qs.shape[-1], dtype=torch.uint8)
    torch.bitwise_and(qs, 0x0F, out=out[..., : qs.shape[-1]])
    torch.bitwise_right_shift(qs, 4, out=out[..., qs.shape[-1] :])
    return out


# --------------------------------------------------------------------------- quantizers


def quantize_int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-row int8: ``(q int8 [N,K], scale float32 [N])``, ``w ~= q * scale``.

    The error per weight is at most ``scale / 2 = max|w_row| / 254``.
    """
    w = w.float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def quantize_int4_g32(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-32 int4: ``(q uint8 [N,K] in 0..15, scale, zero)`` as `int4_groups`."""
    n, k = w.shape
    if k % GROUP:
        raise ValueError(f"int4 needs in_features divisible by {GROUP}, got {k}")
    g = w.float().reshape(n, k // GROUP, GROUP)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = (hi - lo) / 15.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(n, k), scale, lo + 8 * scale


def dequant_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Dense [n, k] weights of int4 codes `q` with per-group (32) `scale` and `zero`: (q - 8) * scale + zero."""
    n, k = q.shape
    g = (q.reshape(n, k // GROUP, GROUP).float() - 8) * scale[..., None] + zero[..., None]
    return g.reshape(n, k)
