"""The paged KV pool: one tensor of slots per layer for K and for V, sized from a memory budget.

Slot `b * block_size + i` holds position i of block b. Writes scatter a step's new K/V into their
slots (`index_copy_`); attention gathers a sequence's whole blocks through its block table. With
`cache_type="f8e4m3"` K/V are stored as float8 (e4m3, a fixed scale, values clamped to its
range) and converted back on read: half the bytes of bf16, a quarter of fp32.

Side channel: `KVSpec.aux_layers`/`aux_width` (set by a plugin in `engine_prepare_model`, before
the pool is sized) add an int64 tensor `aux` `[aux_layers, slots, aux_width]`, per-token state
kept by slot like K/V (the AnyMoE plugin's running routing sums): it is counted in the budget,
shared with prefix-cache hits and copied by swap-out/in, so it follows the KV exactly.

Budget priority (runner-api.md §3.3): context tokens > fraction of memory > megabytes >
`memory_goal` (0.9.5: `0.9`, `"4GiB"`, `"65536tokens"`) > the model's max sequence length.
On CPU the fraction and megabytes refer to RAM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

F8_MAX = 448.0


@dataclass(slots=True)
class KVSpec:
    """Shape and dtype of one model's KV cache."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    aux_layers: int = 0
    aux_width: int = 0

    def bytes_per_token(self, cache_type: str = "auto") -> int:
        elem = 1 if cache_type == "f8e4m3" else torch.tensor([], dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * elem + 8 * self.aux_layers * self.aux_width


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read available memory from /proc/meminfo")


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def plan_num_blocks(spec: KVSpec, block_size: int, *, max_seq_len: int, cache_type: str = "auto",
                    ctxt_len: int | None = None, mem_usage: float | None = None, mem_mb: int | None = None,
                    memory_goal: str | float | None = None) -> int:
    """How many blocks the pool gets under the configured budget (never below one sequence's worth)."""
    per_token = spec.bytes_per_token(cache_type)
    tokens: int | None = None
    if ctxt_len is not None:
        tokens = int(ctxt_len)
    elif mem_usage is not None:
        if not 0 < float(mem_usage) <= 1:
            raise ValueError(f"pa_gpu_mem_usage must be in (0, 1], got {mem_usage!r}")
        tokens = int(_available_bytes(spec.device) * float(mem_usage)) // per_token
    elif mem_mb is not None:
        tokens = int(mem_mb) * 2**20 // per_token
    elif memory_goal is not None:
        tokens = _parse_goal(memory_goal, spec.device, per_token)
    if tokens is None:
        tokens = max_seq_len
    if tokens < block_size:
        raise ValueError(f"the KV budget holds {tokens} tokens, less than one block of {block_size}")
    return max(1, tokens // block_size)


def _parse_goal(goal: str | float, device: torch.device, per_token: int) -> int:
    if isinstance(goal, (int, float)) and not isinstance(goal, bool):
        if not 0 < float(goal) <= 1:
            raise ValueError(f"memory_goal as a number is a fraction in (0, 1], got {goal!r}")
        return int(_available_bytes(device) * float(goal)) // per_token
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", str(goal))
    if not m:
        raise ValueError(f"memory_goal {goal!r} is not understood: use 0.9, '4GiB', '512MB' or '65536tokens'")
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit in ("tokens", "token", "tok"):
        return int(value)
    if unit not in _UNITS:
        raise ValueError(f"memory_goal unit {m.group(2)!r} is not one of tokens, {', '.join(_UNITS)}")
    return int(value * _UNITS[unit]) // per_token


class KVPool:
    """K and V slot tensors `[layers, slots, kv_heads, head_dim]` for one model."""

    def __init__(self, spec: KVSpec, num_blocks: int, block_size: int, cache_type: str = "auto") -> None:
        if cache_type not in ("auto", "f8e4m3"):
            raise ValueError(f"pa_cache_type must be auto or f8e4m3, got {cache_type!r}")
        self.spec, self.block_size, self.num_blocks, self.cache_type = spec, block_size, num_blocks, cache_type
        # float8 is stored as raw bytes: index_copy_/indexing have no float8 kernels on CPU
        store = torch.uint8 if cache_type == "f8e4m3" else spec.dtype
        shape = (spec.num_layers, num_blocks * block_size, spec.num_kv_heads, spec.head_dim)
        self.k = torch.zeros(shape, dtype=store, device=spec.device)
        self.v = torch.zeros(shape, dtype=store, device=spec.device)
        self._f8 = cache_type == "f8e4m3"
        if self._f8:  # one scale per (slot, kv head): amax / 448 of that head vector
            self.k_scale = torch.ones(shape[:3] + (1,), dtype=torch.float32, device=spec.device)
            self.v_scale = torch.ones(shape[:3] + (1,), dtype=torch.float32, device=spec.device)
        self.aux: torch.Tensor | None = None
        if spec.aux_layers > 0 and spec.aux_width > 0:
            self.aux = torch.zeros(spec.aux_layers, num_blocks * block_size, spec.aux_width, dtype=torch.int64,
                                   device=spec.device)

    def nbytes(self) -> int:
        extra = 2 * self.k_scale.numel() * 4 if self._f8 else 0
        if self.aux is not None:
            extra += self.aux.numel() * 8
        return 2 * self.k.numel() * self.k.element_size() + extra

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v `[T, kv_heads, d]` into `slots` `[T]`."""
        if self._f8:
            k, ks = _to_f8(k)
            v, vs = _to_f8(v)
            self.k_scale[layer].index_copy_(0, slots, ks)
            self.v_scale[layer].index_copy_(0, slots, vs)
        self.k[layer].index_copy_(0, slots, k)
        self.v[layer].index_copy_(0, slots, v)

    def _stores(self) -> list[torch.Tensor]:
        stores = [self.k, self.v, self.k_scale, self.v_scale] if self._f8 else [self.k, self.v]
        return stores if self.aux is None else stores + [self.aux]

    def copy_out(self, blocks: list[int]) -> list[torch.Tensor]:
        """Copies of the given blocks in every layer (K, V and f8 scales), for `copy_in` later."""
        idx = torch.tensor(blocks, dtype=torch.long, device=self.spec.device)
        return [t.view(t.shape[0], self.num_blocks, self.block_size, *t.shape[2:]).index_select(1, idx)
                for t in self._stores()]

    def copy_in(self, blocks: list[int], saved: list[torch.Tensor]) -> None:
        """Write `copy_out`'s copies into (other) blocks, one for one."""
        idx = torch.tensor(blocks, dtype=torch.long, device=self.spec.device)
        for t, src in zip(self._stores(), saved):
            t.view(t.shape[0], self.num_blocks, self.block_size, *t.shape[2:]).index_copy_(1, idx, src)

    def gather_blocks(self, layer: int, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of whole blocks: `blocks` `[*S]` -> `[*S, block_size, kv_heads, d]` (compute dtype).

        Copying whole blocks moves contiguous runs of `block_size` slots per index, several times
        faster than gathering slot by slot."""
        bs, flat = self.block_size, blocks.reshape(-1)
        shape = (self.num_blocks, bs) + tuple(self.k.shape[2:])
        out = tuple(blocks.shape) + shape[1:]
        # index_select on dim 0 is ~3x faster than advanced indexing for this gather
        k = self.k[layer].view(shape).index_select(0, flat).view(out)
        v = self.v[layer].view(shape).index_select(0, flat).view(out)
        if self._f8:
            sshape = (self.num_blocks, bs) + tuple(self.k_scale.shape[2:])
            sout = tuple(blocks.shape) + sshape[1:]
            ks = self.k_scale[layer].view(sshape).index_select(0, flat).view(sout)
            vs = self.v_scale[layer].view(sshape).index_select(0, flat).view(sout)
            k = (k.view(torch.float8_e4m3fn).float() * ks).to(self.spec.dtype)
            v = (v.view(torch.float8_e4m3fn).float() * vs).to(self.spec.dtype)
        return k, v


def _to_f8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x `[T, heads, d]` -> (float8 bytes, per-(token, head) scale `[T, heads, 1]`)."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / F8_MAX
    q = (x.float() / scale).clamp(-F8_MAX, F8_MAX).to(torch.float8_e4m3fn).view(torch.uint8)
    return q, scale
