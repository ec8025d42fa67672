"""Continuous-batching scheduler over the paged KV pool: chunked prefill, decode, preemption.

Every step feeds each running decode sequence one token and spends the rest of the token budget
on prompt chunks (sequences already prefilling first, then newly admitted ones, FIFO), so new
requests join between steps without stalling running streams. A waiting sequence is admitted
only when its blocks fit (prefix-cache hits count as computed). When a running sequence needs a
block and the pool is full, the most recently admitted sequence is preempted: the KV of its
computed tokens is copied to the swap space (`agentkit.engine.swap`), its blocks are freed and it
goes back to the front of the queue; re-admitted, it gets fresh blocks, its KV is copied back and
it decodes on, so no request is lost and greedy outputs are those of an uninterrupted run. When
the swap space is full (or absent) the sequence is recomputed from its tokens instead.

A slot freed in one step (a sequence finished, was cancelled or preempted) is filled by the
first waiting sequence in the very next `schedule()` call: admission is part of every step.

The scheduler owns the block manager and finishing, as nano-vllm's: after a forward `computed`
records the KV written (and publishes full blocks to the prefix cache); after sampling
`postprocess` appends each token and ends its sequence on EOS, a stop string (found by the
sequence's detokenizer), `max_tokens` or the context limit.

Non-goals: running the model, sampling, grammars and publishing outputs (the engine loop's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from agentkit.engine.block_manager import BlockManager
from agentkit.engine.model_runner import BatchItem
from agentkit.engine.sequence import Sequence, SequenceStatus
from agentkit.engine.swap import SwapSpace


class Scheduler:
    """Decides which sequences run in the next step and how many tokens each gets."""

    def __init__(self, max_seqs: int, max_batch_tokens: int, *, num_blocks: int, block_size: int,
                 prefix_cache_n: int, max_seq_len: int, eos_token_ids: Iterable[int],
                 swap: SwapSpace | None = None) -> None:
        self.max_seqs = max_seqs
        self.max_batch_tokens = max_batch_tokens
        self.blocks = BlockManager(num_blocks, block_size, prefix_cache_n)
        self.max_seq_len = max_seq_len
        self.eos_token_ids = frozenset(eos_token_ids)
        self.swap = swap
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.overflowed: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[BatchItem]:
        """The next batch: every decode, then prompt chunks within the remaining token budget."""
        items: list[BatchItem] = []
        budget = self.max_batch_tokens
        prefilling: list[Sequence] = []
        for s in list(self.running):
            if s.status is not SequenceStatus.RUNNING:
                continue  # preempted while making room for an earlier sequence
            if s.num_tokens - s.num_computed == 1:
                while not self.blocks.can_append(s):
                    victim = self._victim(exclude=s)
                    if victim is None:
                        break
                    self.preempt(victim)
                if not self.blocks.can_append(s):
                    self.preempt(s)  # alone and still no room: wait for others to finish
                    continue
                self.blocks.append_slot(s)
                items.append(BatchItem(s, s.num_computed, 1, True))
                budget -= 1
            else:
                prefilling.append(s)
        items = [it for it in items if it.seq.status is SequenceStatus.RUNNING]
        for s in prefilling:
            if budget <= 0 or s.status is not SequenceStatus.RUNNING:
                continue
            budget -= self._chunk(s, budget, items)
        while self.waiting and len(self.running) < self.max_seqs and budget > 0:
            s = self.waiting[0]
            swapped = s.swapped is not None
            if not self.blocks.can_allocate(s, fresh_only=swapped):
                if not self.running and not items:
                    # alone and still too long for the whole pool: end it as a context overflow
                    self.waiting.popleft()
                    if self.swap is not None:
                        self.swap.drop(s)
                    s.status = SequenceStatus.FINISHED
                    s.finish_reason = "length"
                    self.overflowed.append(s)
                    continue
                break
            self.waiting.popleft()
            self.blocks.allocate(s, fresh_only=swapped)
            if swapped and self.swap is not None:
                self.swap.swap_in(s)
            s.status = SequenceStatus.RUNNING
            self.running.append(s)
            budget -= self._chunk(s, budget, items)
        return items

    def _victim(self, exclude: Sequence) -> Sequence | None:
        for s in reversed(self.running):
            if s is not exclude and s.status is SequenceStatus.RUNNING:
                return s
        return None

    def preempt(self, seq: Sequence, swap: bool = True) -> None:
        """Save the sequence's KV (`swap` and room in the swap space, else it is recomputed later),
        free its blocks and put it back at the front of the queue."""
        self.running.remove(seq)
        if swap and self.swap is not None:
            self.swap.swap_out(seq)
        self.blocks.free_seq(seq, finished=False)
        seq.num_computed = 0
        seq.kv = None
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    @staticmethod
    def _chunk(s: Sequence, budget: int, items: list[BatchItem]) -> int:
        remaining = s.num_tokens - s.num_computed
        n = min(remaining, budget)
        items.append(BatchItem(s, s.num_computed, n, n == remaining))
        return n

    def remove(self, seq: Sequence, finished: bool = True) -> None:
        """Take a sequence out of the queues and release its blocks (finished, cancelled, failed)."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
            self.blocks.free_seq(seq, finished=finished)
        elif seq.status is SequenceStatus.WAITING:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
            if self.swap is not None:
                self.swap.drop(seq)
        seq.status = SequenceStatus.FINISHED

    def computed(self, items: list[BatchItem]) -> None:
        """Record the KV a forward wrote for `items` and publish their full blocks to the prefix cache."""
        for it in items:
            it.seq.num_computed = it.start + it.count
            self.blocks.register_computed(it.seq)

    def postprocess(self, seqs: list[Sequence], results: list[Any], now: float) -> None:
        """Append each sequence's sampled token (`SampleResult`) and decide whether it finished:
        "stop" on EOS (unless `ignore_eos`) or a stop string, "length" at `max_tokens` or the
        context limit. Finished sequences stay in the queues until the engine releases them."""
        for s, res in zip(seqs, results):
            tok = res.token
            s.token_ids.append(tok)
            s.cum_logprob += res.logprob
            s.pending_ids.append(tok)
            s.pending_samples.append(res)
            if s.t_first_token is None:
                s.t_first_token = now
            if tok in self.eos_token_ids and not s.params.ignore_eos:
                s.finish_reason = "stop"
            else:
                stop = s.detok.update(tok)
                if stop is not None:
                    s.stop_sequence = stop
                    s.finish_reason = "stop"
            if s.finish_reason is None and (s.num_generated >= s.max_tokens or s.num_tokens >= self.max_seq_len):
                s.finish_reason = "length"
