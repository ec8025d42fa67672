"""Online calibration of an ISQ model: activation statistics from live traffic, requantization
from the source weights, hot-swapped layer by layer.

`OnlineCalibrator` wraps the native `LlamaModel` of a model loaded with in-situ quantization. It
tracks the four fused linear modules of every decoder layer (qkv, o, gate_up, down), i.e. the
HF modules ``q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj``.

- `begin()` registers a forward pre-hook on each tracked module that adds the squares of its input
  rows per input channel (llama.cpp's imatrix statistic) and counts rows and calls. Nothing is
  registered while not collecting, so serving pays nothing then.
- `counts()` reports mistral.rs's `CalibrationStatus` numbers, per HF module key.
- `harvest()` removes the hooks and returns the importance vector of every key
  (``mean square * calls``, mistral.rs's `.cimatrix` values).
- `requantize_layer(i, mode, imatrix)` reads decoder layer i's weights from the source checkpoint
  (safetensors or GGUF, never the resident quantized copy), quantizes them with the importance
  weighted quantizers of `agentkit.engine.imatrix` (int4 group-32 or int8 per row) and replaces
  the modules. `mode` may differ from the current one (`send_re_isq`).

Every method except `counts` must run on the engine thread (`Engine.call`), between steps.

Non-goals: the LM head and embeddings (kept as loaded), the transformers fallback runner (its
weights are dense: there is nothing to calibrate), MoE experts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from agentkit.engine.imatrix import quantize_int4_g32_weighted, quantize_int8_weighted
from agentkit.engine.models.kernels import build_linear, linear_from_quantized
from agentkit.engine.quant import GROUP, QuantTensor

__all__ = ["CalibrationCounts", "GgufSource", "OnlineCalibrator", "SafetensorsSource", "TrackedLinear"]

_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


@dataclass(frozen=True)
class TrackedLinear:
    """One fused module of decoder layer `layer` (submodule path `attr`, e.g. "mlp.gate_up") and the HF module paths it holds."""

    layer: int
    attr: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationCounts:
    """mistral.rs's `CalibrationStatus` fields: tracked modules, those collecting, token rows seen."""

    collecting: bool
    layers: int
    layers_tracking: int
    total_rows: int
    min_rows: int
    max_rows: int


@dataclass
class _Stats:
    sum_sq: torch.Tensor
    rows: int = 0
    calls: int = 0


class SafetensorsSource:
    """The HF-named weights of a safetensors checkpoint directory, read on demand."""

    def __init__(self, model_dir: str) -> None:
        from safetensors import safe_open

        from agentkit.engine.loading.loader import (  # same key rules as loading
            normalise_keys,
            safetensors_files,
        )

        self._where: dict[str, tuple[str, str]] = {}
        for path in safetensors_files(model_dir):
            with safe_open(path, framework="pt", device="cpu") as fh:
                names = list(fh.keys())
            for hf_name, raw in normalise_keys({n: n for n in names}).items():
                self._where[hf_name] = (path, raw)

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        out: dict[str, torch.Tensor] = {}
        for name in names:
            if name not in self._where:
                raise ValueError(f"source weight {name!r} is missing from the checkpoint")
            path, raw = self._where[name]
            with safe_open(path, framework="pt", device="cpu") as fh:
                out[name] = fh.get_tensor(raw).float()
        return out


class GgufSource:
    """The weights of GGUF file(s), dequantized from their blocks; the file is parsed on first use."""

    def __init__(self, paths: list[str]) -> None:
        self._paths = list(paths)
        self._sd: dict[str, Any] | None = None

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        if self._sd is None:
            from agentkit.engine.loading.gguf import read_gguf

            self._sd = read_gguf(self._paths, dtype=torch.float32, progress=False, keep_quantized=True).state_dict
        missing = [n for n in names if n not in self._sd]
        if missing:
            raise ValueError(f"source weights {missing[:3]} are missing from {self._paths[0]}")
        return {n: (t.dequantize(torch.float32) if isinstance(t, QuantTensor) else t.float())
                for n, t in ((n, self._sd[n]) for n in names)}

    def release(self) -> None:
        """Drop the parsed file (it is re-read on the next `read`)."""
        self._sd = None


class OnlineCalibrator:
    """Activation statistics and from-source requantization for one native ISQ model."""

    def __init__(self, model: Any, mode: str, source: SafetensorsSource | GgufSource) -> None:
        if mode not in ("int4", "int8"):
            raise ValueError(f"online calibration needs an int4 or int8 ISQ model, got weight mode {mode!r}")
        self.model, self.mode, self.source = model, mode, source
        self.tracked: list[TrackedLinear] = []
        for i in range(len(model.layers)):
            p = f"model.layers.{i}."
            self.tracked += [TrackedLinear(i, "self_attn.qkv", tuple(p + a for a in _ATTN)),
                             TrackedLinear(i, "self_attn.o", (p + "self_attn.o_proj",)),
                             TrackedLinear(i, "mlp.gate_up", (p + "mlp.gate_proj", p + "mlp.up_proj")),
                             TrackedLinear(i, "mlp.down", (p + "mlp.down_proj",))]
        self._stats: dict[TrackedLinear, _Stats] = {}
        self._hooks: list[Any] = []

    @property
    def num_keys(self) -> int:
        """HF linear modules covered (mistral.rs's `CalibrationStatus.layers`)."""
        return sum(len(t.keys) for t in self.tracked)

    @property
    def num_layers(self) -> int:
        """Decoder layers."""
        return len(self.model.layers)

    def begin(self) -> int:
        """Start (or restart from zero) collecting on every tracked module; returns the key count."""
        self._remove_hooks()
        fresh: dict[TrackedLinear, _Stats] = {}  # published whole: `counts` may read from another thread
        for t in self.tracked:
            module = self.model.layers[t.layer].get_submodule(t.attr)
            stats = _Stats(torch.zeros(module.in_features, dtype=torch.float32, device=self.model.layer_device(t.layer)))
            fresh[t] = stats
            self._hooks.append(module.register_forward_pre_hook(_collector(stats, module.in_features)))
        self._stats = fresh
        return self.num_keys

    def counts(self) -> CalibrationCounts:
        """Current numbers (any thread)."""
        rows = [s.rows for t, s in list(self._stats.items()) for _ in t.keys]
        return CalibrationCounts(collecting=bool(rows), layers=self.num_keys, layers_tracking=len(rows),
                                 total_rows=sum(rows), min_rows=min(rows, default=0), max_rows=max(rows, default=0))

    def harvest(self) -> dict[str, torch.Tensor]:
        """Stop collecting; ``{key: mean square * calls}`` for every key whose module saw rows."""
        self._remove_hooks()
        out: dict[str, torch.Tensor] = {}
        for t, s in self._stats.items():
            if s.rows:
                values = (s.sum_sq / s.rows * s.calls).float().cpu()
                out.update({k: values for k in t.keys})
        self._stats = {}
        return out

    def stop(self) -> None:
        """Stop collecting and drop the statistics."""
        self._remove_hooks()
        self._stats = {}

    def requantize_layer(self, index: int, mode: str, imatrix: dict[str, torch.Tensor] | None) -> None:
        """Requantize decoder layer `index` from the source weights to `mode` and swap its modules in."""
        layer = self.model.layers[index]
        mine = [t for t in self.tracked if t.layer == index]
        weights = self.source.read([k + ".weight" for t in mine for k in t.keys])
        for t in mine:
            w = torch.cat([weights[k + ".weight"] for k in t.keys])
            parent, _, name = t.attr.rpartition(".")
            old = layer.get_submodule(t.attr)
            setattr(layer.get_submodule(parent), name, self._build(mode, w, old.bias, None if imatrix is None else imatrix.get(t.keys[0]),
                                                                   self.model.layer_device(index)))
        self.mode = mode

    def finish(self) -> None:
        """Release what a requantization pass cached (a parsed GGUF)."""
        release: Callable[[], None] | None = getattr(self.source, "release", None)
        if release is not None:
            release()

    def _build(self, mode: str, w: torch.Tensor, bias: torch.Tensor | None, imp: torch.Tensor | None,
               device: torch.device) -> nn.Module:
        m = self.model
        if mode == "int4" and w.shape[1] % GROUP:  # as at load: such a weight stays dense
            return build_linear([w], None if bias is None else [bias], dtype=m.dtype, device=device, mode="dense")
        if mode == "int4":
            q, s, z = quantize_int4_g32_weighted(w, imp)
            return linear_from_quantized("int4", q, s, z, bias, dtype=m.dtype, device=device)
        q8, s8 = quantize_int8_weighted(w, imp)
        return linear_from_quantized("int8", q8, s8, None, bias, dtype=m.dtype, device=device)

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def _collector(stats: _Stats, k: int) -> Callable[[nn.Module, tuple[Any, ...]], None]:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].reshape(-1, k)
        if x.shape[0] == 0:
            return
        stats.sum_sq = stats.sum_sq + x.float().pow(2).sum(0)  # engine thread only
        stats.rows += int(x.shape[0])
        stats.calls += 1

    return hook
