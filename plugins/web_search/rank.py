"""Rank page text for a query and fill a token budget: chunks, BM25 + embeddings, score fusion.

Scope: `chunk_text` (paragraph-aligned chunks of about `chunk_tokens` tokens, headings kept with
the paragraph they introduce), `rank_chunks` (BM25, embedding cosine, or their fusion: a convex
combination of z-score-normalised scores, `DENSE_WEIGHT` for the embedding and the rest for
BM25, as OpenSearch's z_score normalisation and Weaviate's alpha-weighted hybrid do; "rrf" is
plain reciprocal-rank fusion, k = 60. Both fusions embed only BM25's best `MAX_EMBEDDED`
chunks, so their latency is bounded) and `select` (greedy fill of a token budget in rank order, skipping chunks that
do not fit and near-duplicates of chosen ones: word-trigram Jaccard >= 0.8), with `Chunk` and
`Ranking` values. Chosen chunks come back grouped per source, in page order.

Non-goals: fetching and extraction, output formatting, loading the embedder
(`agentkit.plugins.web_search.embedder`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agentkit.plugins.web_search.bm25 import bm25_scores, terms
from agentkit.plugins.web_search.embedder import Embedder

__all__ = ["Chunk", "Method", "Ranking", "chunk_text", "fuse_scores", "rank_chunks", "select"]

Method = Literal["fusion", "bm25", "embedding", "rrf"]
RRF_K = 60
# the embedding's share of the fused z-scores: it carries paraphrased questions, BM25's 0.2 share
# carries exact names and numbers (bench/search.py: every share from 0.75 to 0.9 scores alike)
DENSE_WEIGHT = 0.8
DUPLICATE_JACCARD = 0.8
MAX_EMBEDDED = 64  # the fusions embed BM25's best this many chunks (bounded latency); the rest follow in BM25 order
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass
class Chunk:
    """A piece of one source's text: `source` indexes the sources, `position` orders it in the page."""

    source: int
    position: int
    text: str
    tokens: int
    title: str = ""


@dataclass
class Ranking:
    """Chunks best first, how they were ranked, and how long it took."""

    chunks: list[Chunk]
    method: Method
    seconds: float
    notes: list[str] = field(default_factory=list)


def _pieces(paragraph: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """`paragraph` split at sentence ends into balanced pieces of at most about `limit` tokens."""
    total = count(paragraph)
    if total <= limit:
        return [paragraph]
    sentences = _SENTENCE.split(paragraph)
    target = total / -(-total // limit)  # equal shares of ceil(total / limit) pieces
    out: list[str] = []
    cur: list[str] = []
    cur_tokens = 0
    for sentence in sentences:
        n = count(sentence)
        if cur and (cur_tokens + n > limit or cur_tokens >= target):
            out.append(" ".join(cur))
            cur, cur_tokens = [], 0
        cur.append(sentence)
        cur_tokens += n
    if cur:
        out.append(" ".join(cur))
    return out


def chunk_text(source: int, text: str, chunk_tokens: int, count: Callable[[str], int], title: str = "") -> list[Chunk]:
    """Paragraph-aligned chunks of `text` of about `chunk_tokens` tokens (a heading joins the next paragraph)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    pending_heading = ""
    for p in paragraphs:
        if p.startswith("# ") and len(p) < 200:
            pending_heading = f"{pending_heading} {p[2:]}".strip()
            continue
        for piece in _pieces(p, chunk_tokens, count):
            pieces.append(f"{pending_heading}\n{piece}" if pending_heading else piece)
            pending_heading = ""
    if pending_heading:
        pieces.append(pending_heading)
    chunks: list[Chunk] = []
    cur, cur_tokens = "", 0
    for piece in pieces:
        n = count(piece)
        if cur and cur_tokens + n > chunk_tokens:
            chunks.append(Chunk(source, len(chunks), cur, cur_tokens, title))
            cur, cur_tokens = "", 0
        cur = f"{cur}\n\n{piece}" if cur else piece
        cur_tokens = count(cur) if cur_tokens else n
    if cur:
        chunks.append(Chunk(source, len(chunks), cur, cur_tokens, title))
    return chunks


def _order(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _zscores(xs: list[float]) -> list[float]:
    """(x - mean) / standard deviation; all 0.0 when the scores do not vary."""
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5
    return [(x - mean) / sd if sd > 1e-12 else 0.0 for x in xs]


def fuse_scores(bm25: list[float], dense: list[float], dense_weight: float = DENSE_WEIGHT) -> list[float]:
    """Per-item fused score: `dense_weight` * z(dense) + (1 - `dense_weight`) * z(bm25) (lists of equal length).

    z-scores put BM25's unbounded scores and cosine similarities on one scale; a ranker whose
    scores are all equal (no query term in any chunk) adds nothing.
    """
    if len(bm25) != len(dense):
        raise ValueError(f"fuse_scores needs one BM25 and one dense score per item, got {len(bm25)} and {len(dense)}")
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight must be in [0, 1], got {dense_weight}")
    if not bm25:
        return []
    return [dense_weight * d + (1.0 - dense_weight) * b for b, d in zip(_zscores(bm25), _zscores(dense))]


def rank_chunks(query: str, chunks: list[Chunk], embedder: Embedder | None, method: Method = "fusion") -> Ranking:
    """`chunks` best first for `query`. Without an embedder, every method ranks by BM25 (noted)."""
    if method not in ("fusion", "bm25", "embedding", "rrf"):
        raise ValueError(f"unknown ranking method {method!r}; use 'fusion', 'bm25', 'embedding' or 'rrf'")
    start = time.perf_counter()
    notes: list[str] = []
    if not chunks:
        return Ranking([], method, 0.0)
    texts = [f"{c.title}\n{c.text}" if c.title else c.text for c in chunks]
    bm25 = bm25_scores(query, texts)
    bm25_order = _order(bm25)
    if method == "bm25" or embedder is None:
        if method != "bm25":
            notes.append("no embedding model: ranked with BM25 only")
        return Ranking([chunks[i] for i in bm25_order], "bm25" if embedder is None else method,
                       time.perf_counter() - start, notes)
    candidates = list(range(len(chunks))) if method == "embedding" else bm25_order[:MAX_EMBEDDED]
    sims = embedder.similarities(query, [texts[i] for i in candidates])
    embedded = set(candidates)
    rest = [i for i in bm25_order if i not in embedded]
    if method == "embedding":
        order = [candidates[j] for j in _order(sims)]
    elif method == "fusion":
        fused = fuse_scores([bm25[i] for i in candidates], sims, DENSE_WEIGHT)
        order = [candidates[j] for j in _order(fused)] + rest
    else:
        votes: dict[int, float] = {}
        lexical = [i for i in bm25_order if bm25[i] > 0]  # a chunk sharing no term gets no BM25 vote
        for ranked in (lexical, [candidates[j] for j in _order(sims)]):
            for r, i in enumerate(ranked):
                votes[i] = votes.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
        order = sorted(range(len(chunks)), key=lambda i: (-votes.get(i, 0.0), i))
    return Ranking([chunks[i] for i in order], method, time.perf_counter() - start, notes)


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = terms(text)
    if len(words) < 3:
        return {tuple(words)}
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def select(ranked: list[Chunk], budget: int, overhead: Callable[[int], int] | None = None) -> list[Chunk]:
    """Chunks filling `budget` tokens in rank order, near-duplicates skipped, grouped per source in page order.

    `overhead(source)` is the token cost of listing a source the first time one of its chunks
    is taken (title, url); default 0.
    """
    chosen: list[Chunk] = []
    seen: list[set[tuple[str, ...]]] = []
    used, opened = 0, set()
    for chunk in ranked:
        cost = chunk.tokens + (overhead(chunk.source) if overhead and chunk.source not in opened else 0)
        if used + cost > budget:
            continue
        sh = _shingles(chunk.text)
        if any(len(sh & s) / max(1, len(sh | s)) >= DUPLICATE_JACCARD for s in seen):
            continue
        chosen.append(chunk)
        seen.append(sh)
        opened.add(chunk.source)
        used += cost
    first: dict[int, int] = {}
    for c in chosen:
        first.setdefault(c.source, len(first))
    return sorted(chosen, key=lambda c: (first[c.source], c.position))
