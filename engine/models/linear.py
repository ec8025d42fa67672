"""Linear layers as loaded (before quantization) and the Linear swap that quantizes a model.

Scope:

- `LoadedLinear`: one linear layer whose weight is kept exactly as the checkpoint gave it: a
  list of parts concatenated along the output features (fused QKV, gate/up), each a dense
  tensor or a packed GGUF `QuantTensor`. This is what `engine_prepare_model` plugins see. Its
  `forward` dequantizes on every call (correct, slow: for calibration, never for serving);
  `dense_weight()` returns the full-precision weight.
- `quantize_model(model, mode=, device=, dtype=)`: gpt-fast's Linear swap. Every `LoadedLinear`
  or `torch.nn.Linear` anywhere in the module tree (including modules a plugin inserted) is
  replaced by the serving module `agentkit.engine.models.kernels.build_linear` makes for it, and the
  model's ``lm_head`` by `build_lm_head`. Packed GGUF parts map onto the int4/int8 kernels
  exactly as they did when loading quantized in one pass.

Non-goals: the kernels and packing themselves (`agentkit.engine.models.kernels`, `agentkit.engine.quant`), quantizing
embeddings or norms, undoing a swap (serving modules hold device-specific packed layouts).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agentkit.engine.models.kernels import build_linear, build_lm_head
from agentkit.engine.quant import INT4_EXACT_TYPES, MODES, QuantTensor

__all__ = ["LoadedLinear", "quantize_model", "resolve_linear_mode"]

Weight = torch.Tensor | QuantTensor


class LoadedLinear(nn.Module):
    """A linear layer holding its checkpoint weight parts unchanged, until `quantize_model` swaps it.

    `parts`: 2-D weights ``[N_i, K]`` (dense tensors or GGUF `QuantTensor` blocks) whose
    concatenation along dim 0 is the weight; `bias`: ``[sum N_i]`` or None.
    """

    def __init__(self, parts: list[Weight], bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        if not parts or any(not isinstance(p, (torch.Tensor, QuantTensor)) or p.ndim != 2 for p in parts):
            raise TypeError("LoadedLinear needs a non-empty list of 2-D tensors or QuantTensors")
        if len({int(p.shape[1]) for p in parts}) != 1:
            raise ValueError(f"weight parts need the same in_features, got {[tuple(p.shape) for p in parts]}")
        self.parts = list(parts)
        self.bias = bias
        self.dtype = dtype
        self.in_features = int(parts[0].shape[1])
        self.out_features = sum(int(p.shape[0]) for p in parts)

    @property
    def is_packed(self) -> bool:
        """Whether some part is still a packed GGUF `QuantTensor`."""
        return any(isinstance(p, QuantTensor) for p in self.parts)

    def dense_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The full weight ``[out_features, in_features]``, GGUF parts dequantized (a new tensor
        unless there is one dense part already in `dtype`)."""
        dtype = dtype or self.dtype
        ws = [p.dequantize(dtype) if isinstance(p, QuantTensor) else p.to(dtype) for p in self.parts]
        return ws[0] if len(ws) == 1 else torch.cat(ws)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in] -> [..., out]`` with the dequantized weight (slow: calibration only)."""
        w = self.dense_weight(x.dtype).to(x.device)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.device, x.dtype))

    def extra_repr(self) -> str:
        kinds = sorted({p.qtype.name if isinstance(p, QuantTensor) else "dense" for p in self.parts})
        return f"in_features={self.in_features}, out_features={self.out_features}, parts={'+'.join(kinds)}"


def resolve_linear_mode(mode: str, parts: list[Any], device: torch.device) -> str:
    """The kernel for one linear: `mode` unless ``auto``. ``auto``: one packed kernel per weight kind
    for every batch size on CPU (GGUF 4-bit blocks run as int4, exactly; other GGUF blocks as int8;
    dense weights dense), so results are batch-invariant; dense on other devices."""
    if mode != "auto":
        return mode
    if device.type != "cpu" or not any(isinstance(w, QuantTensor) for w in parts):
        return "dense"
    if all(isinstance(w, QuantTensor) and w.qtype in INT4_EXACT_TYPES for w in parts):
        return "int4"
    return "int8"


def _parts_of(mod: nn.Module) -> tuple[list[Weight], list[torch.Tensor] | None]:
    parts = mod.parts if isinstance(mod, LoadedLinear) else [mod.weight.detach()]
    if mod.bias is None:
        return parts, None
    return parts, list(mod.bias.detach().split([int(p.shape[0]) for p in parts]))


def quantize_model(model: nn.Module, *, mode: str, device: torch.device, dtype: torch.dtype,
                   head: str = "lm_head", submodule_devices: dict[nn.Module, torch.device] | None = None) -> int:
    """Swap every `LoadedLinear` / `nn.Linear` under `model` for its serving module; return how many.

    `mode`: ``auto``, ``dense``, ``int8`` or ``int4`` (see `resolve_linear_mode`). The child named
    `head` of `model` (the LM head, usually the tied embedding) gets `build_lm_head`: int4 is too
    lossy there, so a packed model or ``int4`` keeps an int8 head on CPU, dense elsewhere.
    `submodule_devices` puts the linears under some submodules (decoder layers placed by
    `num_device_layers`) on another device than `device`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    swappable = (LoadedLinear, nn.Linear)
    packed = any(isinstance(m, LoadedLinear) and m.is_packed for m in model.modules())
    count = 0
    head_mod = getattr(model, head, None)
    if isinstance(head_mod, swappable):
        (weight,), _ = _parts_of(head_mod)
        head_mode = mode if mode in ("dense", "int8") else ("int8" if mode == "int4" or packed else "dense")
        if device.type != "cpu" and mode == "auto":
            head_mode = "dense"
        setattr(model, head, build_lm_head(weight, dtype=dtype, device=device, mode=head_mode))
        count += 1
    device_of = {m: d for sub, d in (submodule_devices or {}).items() for m in sub.modules()}
    for parent in list(model.modules()):
        dev = device_of.get(parent, device)
        for name, child in list(parent.named_children()):
            if isinstance(child, swappable):
                parts, biases = _parts_of(child)
                setattr(parent, name, build_linear(parts, biases, dtype=dtype, device=dev,
                                                   mode=resolve_linear_mode(mode, parts, dev)))
                count += 1
    return count
