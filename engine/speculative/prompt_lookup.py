"""Prompt lookup: draft the tokens that followed the latest earlier occurrence of the context's tail.

Scope: `NgramIndex` (n-gram -> position after its latest occurrence, for n in [min_n, max_n],
extended incrementally as tokens arrive) and `PromptLookupProposer`, which keeps one index per
sequence over its own context (prompt, tool results in it, and what it generated so far) and
proposes the continuation of the longest matching n-gram, or of the source it is copying from
while the text keeps following it (so the latest of many similar lines does not win). Deterministic drafts (a point mass for
the acceptance rule). Cost per step: O(max_n) dictionary operations per new token.

Non-goals: matching across requests (`suffix_cache`), deciding how many tokens to verify (the
adaptive controller asks for `k`).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentkit.engine.speculative.protocol import Draft, DraftContext

__all__ = ["NgramIndex", "PromptLookupProposer"]


class NgramIndex:
    """For each n in [min_n, max_n]: n-gram -> index of the token that followed its latest occurrence."""

    __slots__ = ("max_n", "min_n", "tables", "upto")

    def __init__(self, min_n: int = 1, max_n: int = 4) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
        self.min_n, self.max_n = min_n, max_n
        self.tables: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(min_n, max_n + 1)}
        self.upto = 0  # the n-grams followed by tokens[1:upto] are indexed

    def extend(self, tokens: Sequence[int]) -> None:
        """Index the n-grams of `tokens` (the whole text so far, which only grows) that have a
        following token and were not indexed yet."""
        for i in range(max(self.upto, 1), len(tokens)):  # token i follows the n-grams ending at i-1
            for n, table in self.tables.items():
                if i - n >= 0:
                    table[tuple(tokens[i - n : i])] = i
        self.upto = max(self.upto, len(tokens))

    def match(self, tail: Sequence[int]) -> tuple[int, int]:
        """(position after the latest occurrence of the longest indexed suffix of `tail`, its n),
        or (-1, 0) when no suffix of at least min_n tokens occurred."""
        for n in range(min(self.max_n, len(tail)), self.min_n - 1, -1):
            pos = self.tables[n].get(tuple(tail[len(tail) - n :]))
            if pos is not None:
                return pos, n
        return -1, 0


def continuation(ids: Sequence[int], pos: int, k: int) -> list[int]:
    """`k` tokens from `ids[pos:]`; past the end the draft continues itself, so a match close to
    the tail extends a repeating pattern periodically."""
    out = list(ids[pos : pos + k])
    n = len(ids)
    while len(out) < k and pos < n:
        j = pos + len(out)
        out.append(ids[j] if j < n else out[j - n])
    return out


class PromptLookupProposer:
    """Drafts from the sequence's own context (n-gram prompt lookup, vLLM's "ngram" method)."""

    def __init__(self, max_draft: int = 10, min_n: int = 2, max_n: int = 4) -> None:
        if max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {max_draft}")
        self.max_draft = max_draft
        self.min_n, self.max_n = min_n, max_n
        NgramIndex(min_n, max_n)  # validate now
        self._index: dict[int, NgramIndex] = {}
        self._cursor: dict[int, tuple[int, int]] = {}  # seq_id -> (source position drafted from, len(ids) then)

    def lookup(self, ctx: DraftContext, k: int) -> tuple[list[int], int]:
        """Up to `k` tokens continuing the longest earlier match of the context's tail, and the
        match length n (0: no match). The copy in progress wins over the latest occurrence: when
        the text since the last draft followed its source (`max_n` tokens agree), the draft
        continues from there (a JSON list of similar records, code with repeated lines)."""
        ids = ctx.token_ids
        index = self._index.get(ctx.seq_id)
        if index is None:
            index = self._index[ctx.seq_id] = NgramIndex(self.min_n, self.max_n)
        index.extend(ids)
        pos, n = self._follow(ctx.seq_id, ids)
        if pos < 0:
            pos, n = index.match(ids[max(0, len(ids) - self.max_n) :])
        if pos < 0:
            self._cursor.pop(ctx.seq_id, None)
            return [], 0
        self._cursor[ctx.seq_id] = (pos, len(ids))
        return continuation(ids, pos, k), n

    def _follow(self, seq_id: int, ids: Sequence[int]) -> tuple[int, int]:
        """(where the source of the last draft continues now, max_n), or (-1, 0) when the text
        no longer follows it."""
        cur = self._cursor.get(seq_id)
        if cur is None:
            return -1, 0
        want = cur[0] + len(ids) - cur[1]
        n = self.max_n
        if not n <= want < len(ids) - n or list(ids[want - n : want]) != list(ids[len(ids) - n :]):
            return -1, 0
        return want, n

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        return Draft(self.lookup(ctx, k)[0])

    def finished(self, ctx: DraftContext) -> None:
        self._index.pop(ctx.seq_id, None)
        self._cursor.pop(ctx.seq_id, None)
