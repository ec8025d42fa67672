"""A suffix cache shared by every request of one loaded model, and the default n-gram proposer.

Scope:
- `SuffixCache`: what earlier sequences generated (each completion with the `max_n` prompt
  tokens before it), in one bounded token store with an n-gram index; `lookup` continues the
  longest indexed suffix of a context. It learns only finished sequences' final tokens, so a
  rejected draft never enters it. When full, the older half is dropped and the index rebuilt.
- `NgramProposer`: prompt lookup in the sequence's own context first, the shared cache when it
  has a longer match (an agent re-emitting what it wrote in another session, a repeated answer).
  This is what the built-in speculative plugin enables by default.

Non-goals: per-sequence lookup itself (`prompt_lookup`), frequency-weighted suffix trees
(SuffixDecoding): the latest occurrence wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentkit.engine.speculative.prompt_lookup import NgramIndex, PromptLookupProposer
from agentkit.engine.speculative.protocol import Draft, DraftContext

__all__ = ["NgramProposer", "SuffixCache"]

_SEP = -1  # between documents: no real context contains it, so no match crosses it


class SuffixCache:
    """Token store of finished completions with an n-gram index (bounded to `max_tokens`)."""

    def __init__(self, max_tokens: int = 1 << 20, min_n: int = 2, max_n: int = 4) -> None:
        if max_tokens < 64:
            raise ValueError(f"max_tokens must be >= 64, got {max_tokens}")
        self.max_tokens = max_tokens
        self.min_n, self.max_n = min_n, max_n
        self.tokens: list[int] = []
        self.index = NgramIndex(min_n, max_n)
        self.num_documents = 0

    def add(self, token_ids: Sequence[int], num_prompt: int) -> None:
        """Learn a finished sequence: its completion and the `max_n` prompt tokens leading into it."""
        doc = list(token_ids[max(0, num_prompt - self.max_n) :])
        if len(doc) <= self.max_n or len(doc) + 1 > self.max_tokens:
            return
        if len(self.tokens) + len(doc) + 1 > self.max_tokens:
            self._shrink(len(doc) + 1)
        self.tokens.extend(doc)
        self.tokens.append(_SEP)
        self.index.extend(self.tokens)
        self.num_documents += 1

    def _shrink(self, room: int) -> None:
        keep = self.tokens[len(self.tokens) // 2 :]
        cut = keep.index(_SEP) + 1 if _SEP in keep else len(keep)
        keep = keep[cut:]
        while keep and len(keep) + room > self.max_tokens:
            cut = keep.index(_SEP) + 1 if _SEP in keep else len(keep)
            keep = keep[cut:]
        self.tokens = keep
        self.index = NgramIndex(self.min_n, self.max_n)
        self.index.extend(self.tokens)

    def lookup(self, tail: Sequence[int], k: int) -> tuple[list[int], int]:
        """Up to `k` tokens that followed the longest indexed suffix of `tail` (stopping at the end
        of that document), and the match length (0: none)."""
        pos, n = self.index.match(tail[max(0, len(tail) - self.max_n) :])
        if pos < 0:
            return [], 0
        out = self.tokens[pos : pos + k]
        if _SEP in out:
            out = out[: out.index(_SEP)]
        return out, n


class NgramProposer:
    """Prompt lookup in the sequence's own context, else the Runner-wide suffix cache."""

    def __init__(self, max_draft: int = 10, cache: SuffixCache | None = None, min_n: int = 2,
                 max_n: int = 4) -> None:
        self.local = PromptLookupProposer(max_draft, min_n, max_n)
        self.cache = cache if cache is not None else SuffixCache(max_n=max_n)
        self.max_draft = max_draft

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        local, n_local = self.local.lookup(ctx, k)
        if n_local >= self.cache.max_n and len(local) >= k:
            return Draft(local)
        shared, n_shared = self.cache.lookup(ctx.token_ids, k)
        if n_shared > n_local or (n_shared == n_local and len(shared) > len(local)):
            return Draft(shared)
        return Draft(local)

    def finished(self, ctx: DraftContext) -> None:
        self.local.finished(ctx)
        self.cache.add(ctx.token_ids, ctx.num_prompt)
