"""Manual layer placement: mistral.rs's `num_device_layers` parsed, checked and planned.

Formats (mistralrs `Runner(num_device_layers=...)`):

- ``["N"]``: the first N decoder layers on the main device (device 0), the rest on the CPU. N may
  exceed the model's layer count (mistral.rs's examples pass ``"500"``): it is clamped.
- ``["ORD:NUM", ...]``: NUM layers on accelerator ORD, in list order, the rest on the CPU. An
  ordinal may appear once. Unlike the single form, the counts must not exceed the layer count.

`parse_num_device_layers` checks the syntax (no model needed); `plan_layers` turns the entries into
a `LayerPlacement` (one device per layer) for a model with a known layer count and the devices
this machine has, so placement is testable without GPUs. On a CPU-only machine, ordinal 0 is the
CPU and every plan puts all layers there.

Non-goals: automatic mapping by free memory, topology files, tensor parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DeviceLayers", "LayerPlacement", "available_devices", "check_ordinals", "parse_num_device_layers",
           "plan_layers"]


@dataclass(frozen=True)
class DeviceLayers:
    """`layers` decoder layers on device ordinal `ordinal`."""

    ordinal: int
    layers: int


@dataclass(frozen=True)
class LayerPlacement:
    """Device string (``"cpu"``, ``"cuda:1"``) of every decoder layer, first layer first."""

    devices: tuple[str, ...]

    @property
    def single_device(self) -> str | None:
        """The one device all layers share, or None when they are spread over several."""
        unique = set(self.devices)
        return next(iter(unique)) if len(unique) == 1 else None

    def counts(self) -> dict[str, int]:
        """Layers per device, in first-use order."""
        out: dict[str, int] = {}
        for d in self.devices:
            out[d] = out.get(d, 0) + 1
        return out


def _int(text: str, what: str, entry: str) -> int:
    s = text.strip()
    if not s.isdigit():
        raise ValueError(
            f"num_device_layers entry {entry!r}: {what} {text!r} is not a non-negative integer;"
            " use [\"N\"] (N layers on device 0) or [\"ORD:NUM\", ...] such as [\"0:16\", \"1:8\"]"
        )
    return int(s)


def parse_num_device_layers(spec: Sequence[str]) -> tuple[DeviceLayers, ...]:
    """Parse mistral.rs's `num_device_layers` strings; ValueError/TypeError naming the bad entry."""
    if isinstance(spec, (str, bytes)) or not isinstance(spec, (list, tuple)):
        raise TypeError(f"num_device_layers must be a list of strings such as [\"500\"] or [\"0:16\", \"1:8\"], "
                        f"got {type(spec).__name__}")
    if not spec:
        raise ValueError("num_device_layers is empty; give [\"N\"] or [\"ORD:NUM\", ...], or leave it None")
    for entry in spec:
        if not isinstance(entry, str):
            raise TypeError(f"num_device_layers entries must be strings, got {entry!r}")
    if len(spec) == 1 and spec[0].strip().isdigit():
        return (DeviceLayers(0, int(spec[0].strip())),)
    out: list[DeviceLayers] = []
    for entry in spec:
        ord_text, sep, num_text = entry.partition(":")
        if not sep:
            raise ValueError(f"num_device_layers entry {entry!r} is not of the form ORD:NUM (e.g. \"0:16\")")
        item = DeviceLayers(_int(ord_text, "device ordinal", entry), _int(num_text, "layer count", entry))
        if any(x.ordinal == item.ordinal for x in out):
            raise ValueError(f"num_device_layers names device ordinal {item.ordinal} twice")
        out.append(item)
    return tuple(out)


def available_devices() -> tuple[str, ...]:
    """Accelerators by ordinal (``("cuda:0", "cuda:1")``), or ``("cpu",)`` without CUDA."""
    import torch

    if torch.cuda.is_available():
        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    return ("cpu",)


def check_ordinals(entries: Sequence[DeviceLayers], devices: Sequence[str]) -> None:
    """ValueError naming the first ordinal of `entries` that `devices` lacks."""
    for e in entries:
        if not 0 <= e.ordinal < len(devices):
            have = ", ".join(f"{i} = {d}" for i, d in enumerate(devices))
            raise ValueError(f"num_device_layers names device ordinal {e.ordinal}, which does not exist here "
                             f"(available: {have})")


def plan_layers(entries: Sequence[DeviceLayers], num_layers: int, devices: Sequence[str]) -> LayerPlacement:
    """Place `num_layers` decoder layers as `entries` ask; `devices` = `available_devices()`.

    Layers not given to a device go to the CPU. ValueError for an ordinal this machine lacks or,
    with several entries, counts adding up to more than `num_layers`.
    """
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    check_ordinals(entries, devices)
    if len(entries) == 1:
        n = min(entries[0].layers, num_layers)  # mistral.rs clamps the single form ("500")
        return LayerPlacement(tuple([devices[entries[0].ordinal]] * n + ["cpu"] * (num_layers - n)))
    total = sum(e.layers for e in entries)
    if total > num_layers:
        raise ValueError(f"num_device_layers places {total} layers ({', '.join(f'{e.ordinal}:{e.layers}' for e in entries)})"
                         f" but the model has {num_layers}; lower the counts")
    placed: list[str] = []
    for e in entries:
        placed.extend([devices[e.ordinal]] * e.layers)
    return LayerPlacement(tuple(placed + ["cpu"] * (num_layers - total)))
