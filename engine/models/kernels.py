"""Weight-only quantized linear layers (the kernels) for the native engine, fed by GGUF blocks or dense weights.

Scope (the blocks and quantizers themselves are `agentkit.engine.quant`):

- `build_linear(weights, biases, dtype=, device=, mode=)`: one module for one or several weights
  concatenated along the output features (fused QKV, gate/up). Modes:

  ``dense``  dequantize to `dtype`, `F.linear`.
  ``int8``   per-output-channel symmetric int8, `aten._weight_int8pack_mm` (CPU only).
  ``int4``   group-32 asymmetric int4, `aten._weight_int4pack_mm_for_cpu` (CPU) or
             `aten._weight_int4pack_mm` (CUDA). Q4_0, Q4_1 and Q4_K blocks map onto it exactly
             (Q4_1: scale = d, zero = m + 8 d), up to the bf16 rounding of activations, scales
             and zeros that the fast kernels need; other weights are quantized.
  ``auto``   CUDA and other devices: dense in `dtype`. CPU: a packed copy for small batches
             (int4 when every piece is Q4_0/Q4_1/Q4_K, else int8 when some piece is a
             `QuantTensor`; dense-only weights get no packed copy, so `auto` never quantizes an
             unquantized checkpoint) plus a dense copy for batches of at least
             `AUTO_SWITCH_M[kind]` rows, in bf16 when the CPU has AMX tiles, else in `dtype`.
- `build_lm_head(weight, dtype=, device=, mode=)`: the (usually tied) LM head. ``auto`` on CPU:
  int8 per channel below `AUTO_SWITCH_M["head"]` rows, dense above.
- `dequantize_state_dict`: dense copy of a kept-quantized state dict (for the transformers runner).

Every packed op is probed once per (op, device type, activation dtype) on a small random matrix
against the dense formula; a missing op, an error or a wrong result makes that mode fall back to
dense with a one-time warning. Modules hold device-specific packed layouts: build them on the
target device, never `.to()` them elsewhere.

Non-goals: training (no autograd through the packed ops), activation quantization, GGUF types
other than Q4_0/Q4_1/Q4_K/Q8_0 kept packed (the loader returns those dense), int8 on CUDA.

Measurements behind the choices below (kernel timings per batch size, switch points, LM head
accuracy) are in bench/README.md, "Linear kernels".
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agentkit.engine.quant import (
    AUTO_SWITCH_M,
    GROUP,
    INT4_EXACT_TYPES,
    MODES,
    QuantTensor,
    dequant_int4,
    quantize_int4_g32,
    quantize_int8_per_channel,
)

__all__ = [
    "PACKED_ACT_DTYPE",
    "AutoLinear",
    "DenseLinear",
    "EngineLinear",
    "Int4Linear",
    "Int8Linear",
    "build_linear",
    "build_lm_head",
    "cpu_batch_dtype",
    "dequantize_state_dict",
    "linear_from_quantized",
]


# --------------------------------------------------------------------------- op access and probes

_warned: set[str] = set()
_probe_cache: dict[tuple[str, str, torch.dtype], str | None] = {}
_lock = threading.Lock()


def _aten_op(name: str) -> Callable[..., torch.Tensor] | None:
    """``torch.ops.aten.<name>`` or None when this torch build lacks it."""
    try:
        return getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None


def _warn_once(key: str, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def cpu_batch_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of ``auto``'s dense copy on CPU for a model of `dtype`: bf16 with AMX tiles, else `dtype`.

    Without AMX, oneDNN's bf16 GEMM is slower than fp32 (82 vs 165 GFLOP/s on one thread of this
    project's VM), so a float32 model keeps float32; with AMX, bf16 is ~6x faster than fp32
    (2.7 TFLOP/s on the VM of performance.md §7), so it is used even for a float32 model.
    """
    try:
        amx = bool(torch.cpu._is_amx_tile_supported())
    except Exception:
        amx = False
    return torch.bfloat16 if amx else dtype


#: Activation dtype of the packed kernels. torch 2.13's CPU int4/int8 weight-only kernels are
#: only vectorised for bf16 activations: fp32 or fp16 activations take a slow path (1536x576,
#: M=1, one thread: int4 58 us in bf16, 1,805 us in fp32, 2,719 us in fp16; int8 58 / 659 / 1,500
#: us), and the CUDA int4 kernel takes bf16 only. Modules cast x to it and the result back.
PACKED_ACT_DTYPE = torch.bfloat16


def _probe(kind: str, device: torch.device) -> str | None:
    """None when the packed `kind` op runs on `device` and reproduces the dense formula, else why not."""
    act = PACKED_ACT_DTYPE
    key = (kind, device.type, act)
    if key in _probe_cache:
        return _probe_cache[key]
    try:
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(64, 256, generator=gen)
        x = torch.randn(3, 256, generator=gen)
        if kind == "int4":
            q, s, z = quantize_int4_g32(w)
            ref = x @ dequant_int4(q, s, z).t()
            mod = Int4Linear.pack(q, s, z, None, device, act)
        else:
            q8, s8 = quantize_int8_per_channel(w)
            ref = x @ (q8.float() * s8[:, None]).t()
            mod = Int8Linear(q8, s8, None, device, act)
        if mod is None:
            reason: str | None = "the op is missing from this torch build or device"
        else:
            got = mod(x.to(device)).float().cpu()
            tol = 0.05 if act == torch.bfloat16 else 1e-3
            err = (got - ref).abs().max().item() / ref.abs().max().item()
            reason = None if err <= tol else f"its result differs from the dense formula (relative error {err:.3g})"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    _probe_cache[key] = reason
    return reason


# --------------------------------------------------------------------------- modules


class EngineLinear(nn.Module):
    """Base: flattens leading dims, adds the bias, returns ``x.dtype``."""

    kind = "dense"

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", bias, persistent=False)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:  # [M, K] -> [M, N] in x.dtype
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in_features] -> [..., out_features]`` in ``x.dtype``."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.shape[0] == 0:
            return x.new_empty(*lead, self.out_features)
        y = self._mm(x2)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}"


class DenseLinear(EngineLinear):
    """A float weight multiplied as is (fp32/bf16/fp16)."""

    kind = "dense"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias)
        self.register_buffer("weight", weight, persistent=False)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.dtype == w.dtype:
            return F.linear(x, w)
        return F.linear(x.to(w.dtype), w).to(x.dtype)


class Int8Linear(EngineLinear):
    """Int8 weights with one scale per output channel."""

    kind = "int8"

    def __init__(
        self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, device: torch.device,
        act: torch.dtype = PACKED_ACT_DTYPE,
    ) -> None:
        super().__init__(q.shape[1], q.shape[0], bias)
        self._op = _aten_op("_weight_int8pack_mm")
        if self._op is None:
            raise RuntimeError("torch.ops.aten._weight_int8pack_mm is not available")
        self.register_buffer("weight_int8", q.to(device).contiguous(), persistent=False)
        self.register_buffer("scale", scale.to(device, act), persistent=False)  # activation dtype

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        act = self.scale.dtype
        if x.dtype == act:
            return self._op(x.contiguous(), self.weight_int8, self.scale)
        return self._op(x.to(act).contiguous(), self.weight_int8, self.scale).to(x.dtype)


class Int4Linear(EngineLinear):
    """Int4 weights in groups of 32 (scale and zero per group), packed for torch's int4 kernels."""

    kind = "int4"

    def __init__(
        self, packed: torch.Tensor, sz: torch.Tensor, in_features: int, out_features: int,
        bias: torch.Tensor | None, op: Callable[..., torch.Tensor],
    ) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("packed", packed, persistent=False)
        self.register_buffer("scales_and_zeros", sz, persistent=False)
        self._op = op

    @classmethod
    def pack(
        cls, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None,
        device: torch.device, act: torch.dtype = PACKED_ACT_DTYPE,
    ) -> Int4Linear | None:
        """Pack `(q, scale, zero)` for `device` with `act` activations (float32 is exact but slow
        on CPU; CUDA takes bf16 only); None when the shape or op does not fit."""
        n, k = q.shape
        sz = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(device, act)  # [K/32, N, 2]
        if device.type == "cpu":
            conv, op = _aten_op("_convert_weight_to_int4pack_for_cpu"), _aten_op("_weight_int4pack_mm_for_cpu")
            if conv is None or op is None or n % 16 or k % GROUP:
                return None
            packed = conv(q.to(torch.int32).contiguous(), 1)
        elif device.type == "cuda":
            conv, op = _aten_op("_convert_weight_to_int4pack"), _aten_op("_weight_int4pack_mm")
            tiles = next((t for t in (8, 4, 2) if k % (t * 16) == 0), None)
            if conv is None or op is None or tiles is None or n % 8 or act != torch.bfloat16:
                return None
            qd = q.to(device=device, dtype=torch.int32)
            packed = conv(((qd[:, ::2] << 4) | qd[:, 1::2]).to(torch.uint8).contiguous(), tiles)
        else:
            return None
        return cls(packed, sz, k, n, bias, op)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        act = self.scales_and_zeros.dtype
        if x.dtype == act:
            return self._op(x.contiguous(), self.packed, GROUP, self.scales_and_zeros)
        return self._op(x.to(act).contiguous(), self.packed, GROUP, self.scales_and_zeros).to(x.dtype)


class AutoLinear(EngineLinear):
    """A packed module for ``M < threshold`` rows and a dense one for larger batches."""

    kind = "auto"

    def __init__(self, small: EngineLinear, large: EngineLinear, threshold: int) -> None:
        super().__init__(small.in_features, small.out_features, None)
        self.small, self.large, self.threshold = small, large, int(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Route by the number of rows (``x.numel() // in_features``)."""
        m = x.numel() // self.in_features
        return self.small(x) if m < self.threshold else self.large(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, small={self.small.kind}, large={self.large.kind}({self.large.weight.dtype}), threshold={self.threshold}"


# --------------------------------------------------------------------------- builders


def _check_args(weights: Any, biases: Any, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError(f"weights must be a non-empty list of tensors or QuantTensors, got {type(weights).__name__}")
    for w in weights:
        if not isinstance(w, (torch.Tensor, QuantTensor)) or w.ndim != 2:
            raise TypeError(f"each weight must be a 2-D torch.Tensor or QuantTensor, got {w!r:.80}")
    if len({int(w.shape[1]) for w in weights}) != 1:
        raise ValueError(f"weights to concatenate need the same in_features, got shapes {[tuple(w.shape) for w in weights]}")
    if biases is not None and (not isinstance(biases, (list, tuple)) or len(biases) != len(weights)):
        raise ValueError("biases must be None or a list with one bias tensor per weight")


def _dense(weights: list[torch.Tensor | QuantTensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    parts = [w.dequantize(dtype) if isinstance(w, QuantTensor) else w for w in weights]
    if len(parts) == 1:  # shares storage when nothing changes (a tied embedding); never a Parameter
        return parts[0].detach().to(device, dtype).contiguous()
    return torch.cat([p.to(device, dtype) for p in parts]).contiguous()


def _int4_parts(weights: list[torch.Tensor | QuantTensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    qs, ss, zs = [], [], []
    for w in weights:
        if isinstance(w, QuantTensor) and w.qtype in INT4_EXACT_TYPES:
            q, s, z = w.int4_groups()
        else:
            q, s, z = quantize_int4_g32(w.dequantize() if isinstance(w, QuantTensor) else w)
        qs.append(q)
        ss.append(s)
        zs.append(z)
    return torch.cat(qs), torch.cat(ss), torch.cat(zs)


def _packed(
    kind: str, weights: list[torch.Tensor | QuantTensor], bias: torch.Tensor | None, device: torch.device,
    dense_f32: torch.Tensor | None = None,
) -> EngineLinear | None:
    """The packed module of `kind`, or None (with a one-time warning) when it cannot run here."""
    reason = _probe(kind, device)
    if reason is not None:
        _warn_once(
            f"unavailable-{kind}-{device.type}",
            f"{kind} weight-only matmul is unavailable on {device.type} with torch {torch.__version__}"
            f" ({reason}); using dense weights instead",
        )
        return None
    if kind == "int4":
        if int(weights[0].shape[1]) % GROUP:
            return None
        mod = Int4Linear.pack(*_int4_parts(weights), bias, device)
        if mod is None:
            n, k = sum(int(w.shape[0]) for w in weights), int(weights[0].shape[1])
            _warn_once(f"shape-int4-{n}x{k}", f"int4 packing does not support a {n}x{k} weight on {device.type}; using dense")
        return mod
    w = dense_f32 if dense_f32 is not None else _dense(weights, torch.float32, torch.device("cpu"))
    q, s = quantize_int8_per_channel(w)
    return Int8Linear(q, s, bias, device)


def build_linear(
    weights: list[torch.Tensor | QuantTensor],
    biases: list[torch.Tensor] | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    mode: str = "auto",
    threshold: int | None = None,
) -> nn.Module:
    """One linear module over `weights` concatenated along the output features.

    `forward(x[..., K]) -> [..., sum(N_i)]` in ``x.dtype``. `dtype` is the model's dtype (dense
    weights and biases are stored in it). `mode` is ``auto``, ``dense``, ``int8`` or ``int4`` (see
    the module docstring); `threshold` overrides ``auto``'s switch row count. A packed mode that
    cannot run on this device/torch falls back to dense with a one-time RuntimeWarning.
    """
    _check_args(weights, biases, mode)
    device = torch.device(device)
    weights = list(weights)
    bias = None
    if biases is not None:
        bias = torch.cat([b.reshape(-1).to(device, dtype) for b in biases]).contiguous()

    if mode == "auto":
        if device.type != "cpu":
            return DenseLinear(_dense(weights, dtype, device), bias)
        if all(isinstance(w, QuantTensor) and w.qtype in INT4_EXACT_TYPES for w in weights):
            kind: str | None = "int4"
        elif any(isinstance(w, QuantTensor) for w in weights):
            kind = "int8"
        else:
            kind = None
        large_dtype = cpu_batch_dtype(dtype)
        dense_w = _dense(weights, large_dtype, device)
        large = DenseLinear(dense_w, bias)
        if kind is None:
            return large
        small = _packed(kind, weights, bias, device, dense_w if dense_w.dtype == torch.float32 else None)
        if small is None:
            return large
        return AutoLinear(small, large, AUTO_SWITCH_M[kind] if threshold is None else threshold)
    if mode in ("int4", "int8"):
        mod = _packed(mode, weights, bias, device)
        if mod is not None:
            return mod
    return DenseLinear(_dense(weights, dtype, device), bias)


def linear_from_quantized(
    kind: str, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bias: torch.Tensor | None, *,
    dtype: torch.dtype, device: torch.device | str,
) -> nn.Module:
    """A module over already quantized values: ``int4`` takes `quantize_int4_g32`'s ``(q, scale,
    zero)``, ``int8`` `quantize_int8_per_channel`'s ``(q, scale)`` (`zero` None). `bias` is used as
    given. Where the packed op cannot run, the dequantized weight runs dense in `dtype`."""
    device = torch.device(device)
    if kind not in ("int4", "int8"):
        raise ValueError(f"kind must be 'int4' or 'int8', got {kind!r}")
    if _probe(kind, device) is None:
        mod = (Int4Linear.pack(q, scale, zero, bias, device) if kind == "int4"
               else Int8Linear(q, scale, bias, device))
        if mod is not None:
            return mod
    w = dequant_int4(q, scale, zero) if kind == "int4" else q.float() * scale[:, None]
    return DenseLinear(w.to(device, dtype).contiguous(), bias)


def dequantize_state_dict(
    state_dict: dict[str, torch.Tensor | QuantTensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """A copy with every `QuantTensor` dequantized to `dtype` (for code that needs dense weights)."""
    return {k: v.dequantize(dtype) if isinstance(v, QuantTensor) else v for k, v in state_dict.items()}


def build_lm_head(
    weight: torch.Tensor | QuantTensor,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    mode: str = "auto",
    threshold: int | None = None,
) -> nn.Module:
    """The LM head ``[vocab, hidden]`` (pass the embedding matrix when tied).

    ``auto`` on CPU: int8 per channel for fewer than ``AUTO_SWITCH_M["head"]`` rows and the dense
    weight (shared with `weight` when it already has the batch dtype, so a tied fp32 embedding
    costs no copy) for more; elsewhere dense. Use ``auto`` only for quantized checkpoints (GGUF):
    it adds int8 rounding (see the module docstring for the measured logit error); ``dense``
    keeps the weight as is.
    """
    _check_args([weight], None, mode)
    device = torch.device(device)
    if mode != "auto" or device.type != "cpu":
        return build_linear([weight], None, dtype=dtype, device=device, mode="dense" if mode == "auto" else mode)
    large_dtype = cpu_batch_dtype(dtype)
    dense_w = _dense([weight], large_dtype, device)
    large = DenseLinear(dense_w, None)
    small = _packed("int8", [weight], None, device, dense_w if dense_w.dtype == torch.float32 else None)
    if small is None:
        return large
    return AutoLinear(small, large, AUTO_SWITCH_M["head"] if threshold is None else threshold)
