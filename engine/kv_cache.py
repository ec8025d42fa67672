"""Per-sequence contiguous KV cache for the native models.

Each sequence owns one tensor `[layers, 2, kv_heads, capacity, head_dim]` that grows by doubling.
This is the first-version cache: simple and exact. The paged block pool (shared prefixes,
preemption, fixed memory budget) replaces it behind the same `SeqKV` surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class KVSpec:
    """Shape and dtype of one model's KV cache."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device


class SeqKV:
    """The KV cache of one sequence: `length` valid positions in a growable buffer."""

    __slots__ = ("spec", "buf", "length")

    def __init__(self, spec: KVSpec, capacity: int = 64) -> None:
        self.spec = spec
        self.buf = self._alloc(max(16, capacity))
        self.length = 0

    def _alloc(self, capacity: int) -> torch.Tensor:
        s = self.spec
        return torch.empty(
            (s.num_layers, 2, s.num_kv_heads, capacity, s.head_dim), dtype=s.dtype, device=s.device
        )

    @property
    def capacity(self) -> int:
        return self.buf.shape[3]

    def reserve(self, total: int) -> None:
        """Make room for `total` positions (amortised doubling; keeps the valid prefix)."""
        if total <= self.capacity:
            return
        new = self._alloc(max(total, 2 * self.capacity))
        if self.length:
            new[:, :, :, : self.length] = self.buf[:, :, :, : self.length]
        self.buf = new

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v `[kv_heads, t, head_dim]` at positions [start, start + t) of `layer`."""
        t = k.shape[1]
        self.buf[layer, 0, :, start : start + t] = k
        self.buf[layer, 1, :, start : start + t] = v

    def view(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V `[kv_heads, end, head_dim]` of `layer` (views, no copy)."""
        return self.buf[layer, 0, :, :end], self.buf[layer, 1, :, :end]

    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()
