"""Token boundaries inside text a grammar forces: only the tokenizer's own split may end there.

Scope: where the grammar forces the next bytes F (a JSON key and its ``": "`` separator, a call
marker), a token that ends strictly inside F is allowed only when it is the first token of the
tokenizer's canonical encoding of F; tokens that cover F entirely (and go on into the free text
after it, as ``' "('`` does) stay allowed, as does everything where nothing is forced. Without
this a model can split F where its tokenizer never would, and is then off its training
distribution: after ``{"expression":`` SmolLM2-135M picks a lone ``' '`` and then ``'">'``, and
its argument starts with ``>``. `ForcedBoundary.restrict` clears those tokens from one mask row;
its table (the byte string of each ordinary token) is built once per tokenizer.

Added and special tokens are never cleared (their handling is `GrammarMatcher.fix_added_tokens`),
and a row where the canonical first token is not allowed is left as it was.

Non-goals: fast-forwarding forced tokens without a forward pass per token, token healing of the
prompt's last token, boundaries in free text (the model's own choice).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from agentkit.engine.tokenizer import Tokenizer

__all__ = ["ForcedBoundary", "forced_boundary"]

_lock = threading.Lock()


class ForcedBoundary:
    """The ordinary tokens of one tokenizer by their bytes, and the rule of the module docstring."""

    __slots__ = ("_by_bytes", "_llt", "_longest")

    def __init__(self, tokenizer: Tokenizer, llt: Any) -> None:
        skip = set(tokenizer.special_ids) | set(tokenizer.eos_token_ids)
        skip |= {int(i) for i in (getattr(tokenizer.hf, "added_tokens_decoder", None) or {})}
        by_bytes: dict[bytes, int] = {}
        for tok in range(llt.vocab_size):
            if tok in skip or llt.is_special_token(tok):
                continue
            piece = llt.decode_bytes([tok])
            if piece:
                by_bytes.setdefault(piece, tok)
        self._by_bytes = by_bytes
        self._longest = max(map(len, by_bytes), default=0)
        self._llt = llt

    def split_tokens(self, forced: bytes) -> tuple[int | None, list[int]]:
        """(the canonical first token of `forced`, the ordinary tokens ending strictly inside it
        that are not that token)."""
        if len(forced) < 2:
            return None, []
        canonical = self._llt.tokenize_bytes(forced)
        first = int(canonical[0]) if canonical else None
        out = []
        for end in range(1, min(len(forced), self._longest + 1)):
            tok = self._by_bytes.get(forced[:end])
            if tok is not None and tok != first:
                out.append(tok)
        return first, out

    def restrict(self, matcher: Any, row: np.ndarray) -> None:
        """Clear, in the uint8 0/1 mask `row` of llguidance matcher `matcher`, the tokens that would
        split its forced bytes off the canonical encoding (unless the canonical token is not allowed).
        The tokenizer runs only when such a token is allowed (llguidance often leaves none)."""
        forced = matcher.compute_ff_bytes()
        if len(forced) < 2:
            return
        size = len(row)
        found = (self._by_bytes.get(forced[:end]) for end in range(1, min(len(forced), self._longest + 1)))
        allowed = [t for t in found if t is not None and t < size and row[t]]
        if not allowed:
            return
        canonical = self._llt.tokenize_bytes(forced)
        first = int(canonical[0]) if canonical else None
        if first is None or first >= size or not row[first]:
            return
        banned = [t for t in allowed if t != first]
        if banned:
            row[banned] = 0


def forced_boundary(tokenizer: Tokenizer, llt: Any) -> ForcedBoundary:
    """The `ForcedBoundary` of `tokenizer` (llguidance tokenizer `llt`), built once and cached on it."""
    cached = getattr(tokenizer, "_llg_boundary", None)
    if cached is None:
        with _lock:
            cached = getattr(tokenizer, "_llg_boundary", None)
            if cached is None:
                cached = ForcedBoundary(tokenizer, llt)
                tokenizer._llg_boundary = cached  # type: ignore[attr-defined]
    return cached
