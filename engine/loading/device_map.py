"""Manual layer placement: mistral.rs's `num_device_layers` parsed, checked and planned.

Formats (mistralrs `Runner(num_device_layers=...)`):

- ``["N"]``: the first N decoder layers on the main device (device 0), the rest on the CPU. N may
  exceed the model's layer count (mistral.rs's examples pass ``"500"``): it is clamped.
- ``["ORD:NUM", ...]``: NUM layers on accelerator ORD, in list order, the rest on the CPU. An
  ordinal may appear once. Unlike the single form, the counts must not exceed the layer count.

`parse_num_device_layers` checks the syntax (no model needed); `plan_layers` turns the entries into
a `LayerPlacement` (one device per layer, grouped into contiguous `Stage`s, each with its own KV
pool) for a model with a known layer count and the devices by ordinal, so placement is testable
without GPUs. On a CPU-only machine, ordinal 0 is the CPU and every plan puts all layers there.
`ordinal_devices(main)` enumerates the devices by ordinal; `simulated_devices` replaces that list
in tests (two distinct ordinals may both be the CPU: they still get separate stages and pools).

As in mistral.rs, layers left over go to the CPU after the device layers, and the embeddings,
final norm and LM head stay on the main device (the engine's `device`).

Non-goals: automatic mapping by free memory, topology files, tensor parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["DeviceLayers", "LayerPlacement", "Stage", "available_devices", "check_ordinals", "ordinal_devices",
           "parse_num_device_layers", "plan_layers", "simulated_devices"]

HOST = -1  # the ordinal of the CPU that takes the layers no entry asked for
_simulated: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DeviceLayers:
    """`layers` decoder layers on device ordinal `ordinal`."""

    ordinal: int
    layers: int


@dataclass(frozen=True)
class Stage:
    """Decoder layers ``start..stop-1`` on `device`, asked for by `ordinal` (`HOST` = -1: the CPU)."""

    device: str
    start: int
    stop: int
    ordinal: int

    @property
    def layers(self) -> range:
        return range(self.start, self.stop)


@dataclass(frozen=True)
class LayerPlacement:
    """Device string (``"cpu"``, ``"cuda:1"``) of every decoder layer, first layer first, and the
    contiguous `stages` they form (one KV pool per stage; hidden states move between stages)."""

    devices: tuple[str, ...]
    stages: tuple[Stage, ...] = ()

    @property
    def single_device(self) -> str | None:
        """The one device all layers share (one stage), or None when they are spread over several."""
        return self.stages[0].device if len(self.stages) == 1 else None

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


def ordinal_devices(main: Any) -> tuple[str, ...]:
    """Devices by `num_device_layers` ordinal for a model whose main device is `main`: the CUDA
    devices, or the CPU alone (a `simulated_devices` list while one is active)."""
    if _simulated is not None:
        return _simulated
    return available_devices() if getattr(main, "type", str(main).split(":")[0]) == "cuda" else ("cpu",)


@contextmanager
def simulated_devices(devices: Sequence[str]) -> Iterator[None]:
    """Test seam: `ordinal_devices` returns `devices` (e.g. ``("cpu", "cpu")``: two ordinals that
    are both the CPU, placed as separate stages with separate KV pools) until the block exits."""
    global _simulated
    if isinstance(devices, str) or not devices or not all(isinstance(d, str) for d in devices):
        raise TypeError(f"simulated_devices needs a non-empty sequence of device strings, got {devices!r}")
    before, _simulated = _simulated, tuple(devices)
    try:
        yield
    finally:
        _simulated = before


def check_ordinals(entries: Sequence[DeviceLayers], devices: Sequence[str]) -> None:
    """ValueError naming the first ordinal of `entries` that `devices` lacks."""
    for e in entries:
        if not 0 <= e.ordinal < len(devices):
            have = ", ".join(f"{i} = {d}" for i, d in enumerate(devices))
            raise ValueError(f"num_device_layers names device ordinal {e.ordinal}, which does not exist here "
                             f"(available: {have})")


def plan_layers(entries: Sequence[DeviceLayers], num_layers: int, devices: Sequence[str]) -> LayerPlacement:
    """Place `num_layers` decoder layers as `entries` ask; `devices` = `available_devices()`.

    Layers not given to a device go to the CPU, after the others (joining the last stage when
    that is the CPU). ValueError for an ordinal this machine lacks or,
    with several entries, counts adding up to more than `num_layers`.
    """
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    check_ordinals(entries, devices)
    if len(entries) == 1:  # mistral.rs clamps the single form ("500")
        entries = (DeviceLayers(entries[0].ordinal, min(entries[0].layers, num_layers)),)
    total = sum(e.layers for e in entries)
    if total > num_layers:
        raise ValueError(f"num_device_layers places {total} layers ({', '.join(f'{e.ordinal}:{e.layers}' for e in entries)})"
                         f" but the model has {num_layers}; lower the counts")
    stages: list[Stage] = []
    start = 0
    for ordinal, device, n in [(e.ordinal, devices[e.ordinal], e.layers) for e in entries] + \
            [(HOST, "cpu", num_layers - total)]:
        if n == 0:
            continue
        last = stages[-1] if stages else None
        if last is not None and ordinal == HOST and last.device == device:
            stages[-1] = Stage(device, last.start, start + n, last.ordinal)  # the CPU ordinal is the host
        else:
            stages.append(Stage(device, start, start + n, ordinal))
        start += n
    placed = tuple(st.device for st in stages for _ in st.layers)
    return LayerPlacement(placed, tuple(stages))
