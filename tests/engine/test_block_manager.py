"""Block pool accounting and the hash-chained prefix cache (no model needed)."""

from __future__ import annotations

import pytest

from agentkit.engine.block_manager import BlockManager
from agentkit.engine.sampling import SamplingParams
from agentkit.engine.sequence import EngineRequest, Sequence


def seq(tokens: list[int]) -> Sequence:
    req = EngineRequest("r", list(tokens), SamplingParams())
    return Sequence(request=req, index=0, token_ids=list(tokens), num_prompt=len(tokens), max_tokens=16)


def test_allocate_and_free_counts():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(list(range(10)))
    assert bm.can_allocate(s)
    bm.allocate(s)
    assert len(s.block_table) == 3 and bm.num_free == 5
    s.token_ids += [10, 11, 12]
    bm.append_slot(s)  # 13 tokens -> 4 blocks
    assert len(s.block_table) == 4 and bm.num_free == 4
    bm.free_seq(s, finished=True)
    assert bm.num_free == 8 and s.block_table == []


def test_prefix_hit_after_compute_and_refcounts():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(list(range(12)))
    bm.allocate(a)
    assert a.num_computed == 0
    a.num_computed = 12
    bm.register_computed(a)
    b = seq(list(range(8)) + [99, 98, 97])
    bm.allocate(b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.num_computed == 8 and b.num_cached_tokens == 8
    assert bm.blocks[a.block_table[0]].ref_count == 2
    # a prompt fully covered by the cache still recomputes its last token
    c = seq(list(range(12)))
    bm.allocate(c)
    assert c.num_computed == 8


def test_no_hit_before_kv_is_computed():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(list(range(12)))
    bm.allocate(a)
    b = seq(list(range(12)))
    bm.allocate(b)
    assert b.num_computed == 0


def test_freed_blocks_stay_reusable_until_needed():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(list(range(9)))
    bm.allocate(a)
    a.num_computed = 9
    bm.register_computed(a)
    bm.free_seq(a, finished=True)
    b = seq(list(range(9)))
    bm.allocate(b)
    assert b.num_computed == 8
    bm.free_seq(b, finished=True)
    # fill the pool with other content: the cached blocks get recycled, the hit disappears
    filler = seq([500 + i for i in range(16)])
    bm.allocate(filler)
    bm.free_seq(filler, finished=False)
    c = seq(list(range(9)))
    bm.allocate(c)
    assert c.num_computed == 0


def test_prefix_cache_n_bounds_and_disables():
    bm = BlockManager(num_blocks=32, block_size=4, prefix_cache_n=1)
    first = seq(list(range(8)) + [1])
    bm.allocate(first)
    first.num_computed = 9
    bm.register_computed(first)
    bm.free_seq(first, finished=True)
    second = seq([200 + i for i in range(8)] + [1])
    bm.allocate(second)
    second.num_computed = 9
    bm.register_computed(second)
    bm.free_seq(second, finished=True)  # evicts `first` from the findable set
    again = seq(list(range(8)) + [1])
    bm.allocate(again)
    assert again.num_computed == 0
    off = BlockManager(num_blocks=8, block_size=4, prefix_cache_n=0)
    x = seq(list(range(9)))
    off.allocate(x)
    x.num_computed = 9
    off.register_computed(x)
    y = seq(list(range(9)))
    off.allocate(y)
    assert y.num_computed == 0


def test_pool_never_exceeds_budget():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = seq(list(range(12)))
    assert bm.can_allocate(a)
    bm.allocate(a)
    assert not bm.can_allocate(seq([1, 2]))
    a.token_ids.append(1)
    assert not bm.can_append(a)
    with pytest.raises(ValueError):
        BlockManager(num_blocks=0, block_size=4)
