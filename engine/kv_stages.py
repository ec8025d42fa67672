"""The KV cache of a model whose decoder layers run as pipeline stages on several devices.

`StagedKVPool` holds one `KVPool` per stage, on that stage's device, with that stage's layers
only (a layer indexes its stage's pool by its position in the stage). Every pool has the same
blocks, so the block manager's block ids and a sequence's block table are global: block b of a
sequence is block b in every stage. It offers what the runner needs from a pool (save/restore
copies for swapping, sizes); attention uses `pools[i]` directly.

`plan_staged_blocks` sizes the pools: a budget given as a fraction of free memory applies to each
device (the tightest one decides), token and byte budgets to the model as a whole.

Non-goals: the per-token aux side channel (`KVSpec.aux_layers`, the AnyMoE plugin) across stages,
moving blocks between devices for capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from agentkit.engine.kv_cache import KVPool, KVSpec

__all__ = ["StagedKVPool", "plan_staged_blocks"]


class StagedKVPool:
    """One `KVPool` per pipeline stage; block ids are shared by all of them."""

    def __init__(self, specs: Sequence[KVSpec], num_blocks: int, block_size: int, cache_type: str = "auto") -> None:
        if not specs:
            raise ValueError("a StagedKVPool needs at least one stage")
        if any(s.aux_layers for s in specs):
            raise ValueError("the per-token aux KV channel (AnyMoE) is not supported across pipeline stages")
        self.pools = tuple(KVPool(s, num_blocks, block_size, cache_type) for s in specs)
        self.block_size, self.num_blocks, self.cache_type = block_size, num_blocks, cache_type
        self.aux = None

    def nbytes(self) -> int:
        return sum(p.nbytes() for p in self.pools)

    def copy_out(self, blocks: list[int]) -> list[torch.Tensor]:
        """Copies of the given blocks of every stage (each on its stage's device), for `copy_in`."""
        return [t for p in self.pools for t in p.copy_out(blocks)]

    def copy_in(self, blocks: list[int], saved: list[torch.Tensor]) -> None:
        """Write `copy_out`'s copies into (other) blocks, one for one, stage by stage."""
        i = 0
        for p in self.pools:
            n = len(p._stores())
            p.copy_in(blocks, saved[i : i + n])
            i += n


def plan_staged_blocks(plan: Callable[[KVSpec], int], full: KVSpec, stages: Sequence[KVSpec],
                       per_device: bool) -> int:
    """Blocks for every stage's pool: `plan(spec)` of the whole model (`full`), or with a per-device
    budget (`per_device`: a fraction of each device's free memory) the least over the stages."""
    if not per_device or not stages:
        return plan(full)
    return min(plan(s) for s in stages)
