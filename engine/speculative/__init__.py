"""Speculative decoding: the proposer contract the engine will verify drafts from.

Scope: `DraftProposer`, the protocol a proposer (prompt lookup, a suffix cache, a draft model, or a
third-party plugin's) implements and `engine_draft_proposer` returns. Only the contract exists so
far; the verify step and the built-in proposers come with speculative decoding.

Non-goals: choosing a proposer (the built-in speculative plugin), sampling and acceptance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["DraftProposer"]


@runtime_checkable
class DraftProposer(Protocol):
    """Proposes up to `k` draft tokens to follow a sequence's `token_ids` (prompt + generated)."""

    def propose(self, token_ids: Sequence[int], k: int) -> list[int]:
        """Draft token ids (possibly fewer than `k`, or none) the target model then verifies."""
        ...
