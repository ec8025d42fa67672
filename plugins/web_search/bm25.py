"""Okapi BM25 over a small in-memory corpus (the chunks of one search), and its tokenizer.

Scope: `terms(text)` (lower-cased word terms, English stop words dropped, a light plural
stemmer) and `bm25_scores(query, docs)` (one score per document; k1 = 1.5, b = 0.75, the
Lucene idf that is never negative).

Non-goals: persistent indexes, phrase queries, other languages' stemming.
"""

from __future__ import annotations

import math
import re
from collections import Counter

__all__ = ["bm25_scores", "terms"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have how i
if in into is it its of on or that the their them then there these they this those to was were what when
where which who whom whose why will with would you your about after before over under than also not no
so such any all each other more most some very just one""".split())


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Search terms of `text`: lower-case words and numbers, stop words removed, plurals folded."""
    return [_stem(w.split("'")[0]) for w in _WORD.findall(text.lower()) if w not in _STOP]


def bm25_scores(query: str, docs: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25 score of each document in `docs` for `query` (0.0 for a document sharing no term)."""
    tokenized = [terms(d) for d in docs]
    n = len(tokenized)
    if not n:
        return []
    avg = sum(len(t) for t in tokenized) / n or 1.0
    df: Counter[str] = Counter()
    for t in tokenized:
        df.update(set(t))
    q_terms = set(terms(query))
    idf = {q: math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5)) for q in q_terms}
    scores = []
    for t in tokenized:
        tf = Counter(t)
        norm = k1 * (1 - b + b * len(t) / avg)
        scores.append(sum(idf[q] * tf[q] * (k1 + 1) / (tf[q] + norm) for q in q_terms if tf[q]))
    return scores
