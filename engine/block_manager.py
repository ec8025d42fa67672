"""Paged KV accounting: a fixed pool of blocks, per-sequence block tables, and a prefix cache.

Every sequence maps its positions onto `block_size`-token blocks of one shared pool. Full blocks
are hashed by their token chain (a blake2b over the previous block's hash and this block's
token ids; the stored ids are compared too) once their KV has been computed, so another sequence
with the same prefix reuses them (reference counted). Freed blocks keep their contents and hash
and go to the back of the free list, so they are reused LRU-last: a later request can still hit
them until the pool needs the space. `prefix_cache_n` bounds how many finished sequences keep
their blocks findable (0 disables prefix caching).

Not covered: the KV tensors themselves (`kv_cache.py`), copy-on-write forking of shared partial
blocks (only full blocks are ever shared, so writes never touch a shared block).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque

from agentkit.engine.sequence import Sequence


def block_hash(prev: bytes, tokens: list[int]) -> bytes:
    """Chain hash of one full block of token ids following a block whose hash is `prev`."""
    h = hashlib.blake2b(prev, digest_size=16)
    h.update(array("q", tokens).tobytes())
    return h.digest()


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int) -> None:
        self.block_id = block_id
        self.ref_count = 0
        self.hash: bytes | None = None
        self.token_ids: list[int] | None = None


class BlockManager:
    """Allocates blocks to sequences; shares computed full blocks through their chain hash."""

    def __init__(self, num_blocks: int, block_size: int, prefix_cache_n: int = 16) -> None:
        if num_blocks < 1:
            raise ValueError(f"the KV pool needs at least one block, got {num_blocks}")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}
        self.prefix_cache_n = prefix_cache_n
        self._finished: deque[list[int]] = deque()

    # ---- queries ------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self.free)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _lookup(self, seq: Sequence) -> list[int]:
        """Cached block ids covering a prefix of the prompt (at most prompt - 1 tokens)."""
        if self.prefix_cache_n == 0:
            return []
        hits: list[int] = []
        prev = b""
        bs = self.block_size
        for i in range((seq.num_tokens - 1) // bs):
            toks = seq.token_ids[i * bs : (i + 1) * bs]
            h = block_hash(prev, toks)
            bid = self.cached.get(h)
            if bid is None or self.blocks[bid].token_ids != toks:
                break
            hits.append(bid)
            prev = h
        return hits

    def can_allocate(self, seq: Sequence, reserve: int = 0, fresh_only: bool = False) -> bool:
        """Whether the sequence's known tokens fit, counting prefix hits (unless `fresh_only`),
        keeping `reserve` blocks free."""
        hits = [] if fresh_only else self._lookup(seq)
        fresh = self.blocks_needed(seq.num_tokens) - len(hits)
        reused_free = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return fresh + reused_free + reserve <= self.num_free

    # ---- mutation -----------------------------------------------------------------------------
    def allocate(self, seq: Sequence, fresh_only: bool = False) -> None:
        """Give `seq` blocks for all its known tokens; prefix hits count as computed. `fresh_only`
        (a swapped-out sequence whose own KV is copied back): no prefix lookup, nothing computed."""
        assert not seq.block_table, "sequence already has blocks"
        hits = [] if fresh_only else self._lookup(seq)
        for bid in hits:
            self._take(bid)
        seq.block_table = list(hits)
        seq.num_hashed_blocks = len(hits)
        seq.last_hash = self.blocks[hits[-1]].hash if hits else b""
        seq.num_computed = len(hits) * self.block_size
        if seq.num_generated == 0 and not fresh_only:
            seq.num_cached_tokens = seq.num_computed
        for _ in range(self.blocks_needed(seq.num_tokens) - len(hits)):
            seq.block_table.append(self.take_fresh())

    def can_append(self, seq: Sequence) -> bool:
        """Room for one more token (a new block only when the last one is full)."""
        return len(seq.block_table) * self.block_size > seq.num_tokens or self.num_free > 0

    def append_slot(self, seq: Sequence) -> None:
        """Ensure a slot for position `seq.num_tokens - 1` (the newest token)."""
        if len(seq.block_table) * self.block_size < seq.num_tokens:
            seq.block_table.append(self.take_fresh())

    def reserve(self, seq: Sequence, num_tokens: int) -> bool:
        """Give `seq` blocks for positions up to `num_tokens` (speculative draft slots) if the pool
        has them; False (nothing taken) when it does not."""
        extra = self.blocks_needed(num_tokens) - len(seq.block_table)
        if extra > self.num_free:
            return False
        for _ in range(extra):
            seq.block_table.append(self.take_fresh())
        return True

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Return the blocks past position `num_tokens` (rejected draft slots) to the pool. They were
        never hashed (only computed blocks are), so the prefix cache cannot hold their tokens."""
        keep = max(self.blocks_needed(num_tokens), seq.num_hashed_blocks)
        while len(seq.block_table) > keep:
            bid = seq.block_table.pop()
            block = self.blocks[bid]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[bid] = None
                self.free.move_to_end(bid, last=False)  # holds nothing worth keeping: reused first

    def register_computed(self, seq: Sequence) -> None:
        """Hash and publish the sequence's full blocks whose KV is now computed."""
        if self.prefix_cache_n == 0:
            return
        bs = self.block_size
        full = seq.num_computed // bs
        while seq.num_hashed_blocks < full:
            i = seq.num_hashed_blocks
            toks = seq.token_ids[i * bs : (i + 1) * bs]
            h = block_hash(seq.last_hash, toks)
            block = self.blocks[seq.block_table[i]]
            if h not in self.cached:
                if block.hash is not None and self.cached.get(block.hash) == block.block_id:
                    del self.cached[block.hash]
                block.hash, block.token_ids = h, list(toks)
                self.cached[h] = block.block_id
            seq.last_hash = h
            seq.num_hashed_blocks += 1

    def free_seq(self, seq: Sequence, finished: bool) -> None:
        """Release the sequence's blocks (finished, cancelled or preempted)."""
        for bid in reversed(seq.block_table):
            block = self.blocks[bid]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[bid] = None  # most recently freed: reused last
        if finished and self.prefix_cache_n > 0:
            self._finished.append(seq.block_table[: seq.num_hashed_blocks])
            while len(self._finished) > self.prefix_cache_n:
                self._forget(self._finished.popleft())
        seq.block_table = []
        seq.num_hashed_blocks = 0
        seq.last_hash = b""

    def drop_prefix_cache(self) -> int:
        """Make every published block unreachable (the weights changed, so their KV is stale); blocks
        of running sequences stay theirs. Returns how many cache entries were dropped."""
        dropped = len(self.cached)
        self.cached.clear()
        self._finished.clear()
        for block in self.blocks:
            block.hash = block.token_ids = None
        return dropped

    def _forget(self, block_ids: list[int]) -> None:
        for bid in block_ids:
            block = self.blocks[bid]
            if block.ref_count == 0 and block.hash is not None and self.cached.get(block.hash) == bid:
                del self.cached[block.hash]
                block.hash = block.token_ids = None

    def _take(self, bid: int) -> int:
        block = self.blocks[bid]
        if block.ref_count == 0:
            del self.free[bid]
        block.ref_count += 1
        return bid

    def take_fresh(self) -> int:
        """A free block for new content (its old cached identity is dropped)."""
        bid = next(iter(self.free))
        self._drop_identity(bid)
        return self._take(bid)

    def _drop_identity(self, bid: int) -> None:
        block = self.blocks[bid]
        if block.hash is not None and self.cached.get(block.hash) == bid:
            del self.cached[block.hash]
        block.hash = block.token_ids = None
