"""Continuous-batching scheduler: waiting queue, running set, chunked prefill under a token budget.

Every step feeds each running decode sequence one token and spends the rest of the token budget
on prompt chunks (sequences already prefilling first, then newly admitted ones, FIFO), so new
requests join between steps without stalling running streams. Equal-length prompts are just
more slices of the same flattened batch.

Not covered yet: preemption and a KV memory budget (the paged block pool brings both).
"""

from __future__ import annotations

from collections import deque

from agentkit.engine.model_runner import BatchItem
from agentkit.engine.sequence import Sequence, SequenceStatus


class Scheduler:
    """Decides which sequences run in the next step and how many tokens each gets."""

    def __init__(self, max_seqs: int, max_batch_tokens: int) -> None:
        self.max_seqs = max_seqs
        self.max_batch_tokens = max_batch_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

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
        for s in self.running:
            if s.num_tokens - s.num_computed == 1:
                items.append(BatchItem(s, s.num_computed, 1, True))
                budget -= 1
            else:
                prefilling.append(s)
        for s in prefilling:
            if budget <= 0:
                break
            budget -= self._chunk(s, budget, items)
        while self.waiting and len(self.running) < self.max_seqs and budget > 0:
            s = self.waiting.popleft()
            s.status = SequenceStatus.RUNNING
            self.running.append(s)
            budget -= self._chunk(s, budget, items)
        return items

    @staticmethod
    def _chunk(s: Sequence, budget: int, items: list[BatchItem]) -> int:
        remaining = s.num_tokens - s.num_computed
        n = min(remaining, budget)
        items.append(BatchItem(s, s.num_computed, n, n == remaining))
        return n

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out of the queues (finished, cancelled or failed)."""
        if seq.status is SequenceStatus.RUNNING:
            try:
                self.running.remove(seq)
            except ValueError:
                pass
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
        seq.status = SequenceStatus.FINISHED
