"""Swap space: host copies of preempted sequences' KV, so that resuming one is bit-exact.

Scope: when the scheduler preempts a sequence, `SwapSpace.swap_out` asks the model runner for a
copy of the KV of its computed tokens; on re-admission `swap_in` writes that copy into fresh
blocks and the sequence continues decoding where it stopped. Recomputing instead (prefilling
prompt + generated tokens in one chunk) sums attention in another order than the token-at-a-time
decode that produced them, so later logits drift and greedy outputs can change at near-ties;
a copy reproduces the decode-time state exactly. The copies are bounded by `limit_bytes`
(default: the size of the KV pool); past it a preempted sequence is recomputed.

Non-goals: moving KV between devices for capacity (on CPU the "host" is the same RAM), swapping
for the `no_kv_cache` recompute mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from agentkit.engine.sequence import Sequence

log = logging.getLogger("agentkit.engine")


class KVSaver(Protocol):
    """The runner side: copy a sequence's first `num_tokens` KV out, and back into its blocks."""

    def save_kv(self, seq: Sequence, num_tokens: int) -> tuple[Any, int]:
        """(an opaque copy, its size in bytes)."""
        ...

    def saved_nbytes(self, num_tokens: int) -> int:
        """What `save_kv` of `num_tokens` tokens will take, without copying."""
        ...

    def restore_kv(self, seq: Sequence, saved: Any) -> None:
        ...


@dataclass(slots=True)
class Swapped:
    """A preempted sequence's saved KV: `num_computed` tokens in `data` (`nbytes` of host memory)."""

    data: Any
    num_computed: int
    nbytes: int


class SwapSpace:
    """Keeps the KV copies of preempted sequences within a byte budget."""

    def __init__(self, saver: KVSaver, limit_bytes: int) -> None:
        self.saver = saver
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.num_swapped_out = 0
        self.num_recomputed = 0
        self._warned = False

    def swap_out(self, seq: Sequence) -> bool:
        """Save the computed KV of `seq` (before its blocks are freed); False means recompute it."""
        if seq.num_computed == 0:
            return False
        if self.used_bytes + self.saver.saved_nbytes(seq.num_computed) > self.limit_bytes:
            self.num_recomputed += 1
            if not self._warned:
                self._warned = True
                log.warning("swap space full (%d of %d bytes): preempted sequences are recomputed, which can "
                            "change greedy tokens at near-ties; raise the KV budget or lower max_seqs",
                            self.used_bytes, self.limit_bytes)
            return False
        data, nbytes = self.saver.save_kv(seq, seq.num_computed)
        self.used_bytes += nbytes
        seq.swapped = Swapped(data, seq.num_computed, nbytes)
        self.num_swapped_out += 1
        return True

    def swap_in(self, seq: Sequence) -> None:
        """Write the saved KV into the sequence's (fresh) blocks and mark those tokens computed."""
        saved = seq.swapped
        assert saved is not None
        self.saver.restore_kv(seq, saved.data)
        seq.num_computed = saved.num_computed
        self.drop(seq)

    def drop(self, seq: Sequence) -> None:
        """Forget the sequence's copy (swapped in, cancelled or failed while waiting)."""
        if seq.swapped is not None:
            self.used_bytes -= seq.swapped.nbytes
            seq.swapped = None
