"""Chunking, BM25, reciprocal-rank fusion, near-duplicate removal and the budget fill."""

from __future__ import annotations

import logging

from agentkit.plugins.web_search.bm25 import bm25_scores, terms
from agentkit.plugins.web_search.embedder import get_embedder, resolve_model
from agentkit.plugins.web_search.extract import extract
from agentkit.plugins.web_search.rank import Chunk, chunk_text, rank_chunks, select
from agentkit.testing.search_site import FACTS, PAGES
from agentkit.testing.search_site import approx_tokens as count_tokens


def _chunks(facts, size=128):
    out = []
    for i, f in enumerate(facts):
        ex = extract(PAGES[f.slug])
        out += chunk_text(i, ex.text, size, count_tokens, ex.title)
    return out


def test_terms_and_bm25_prefer_the_matching_document():
    assert terms("The Bridges of Varnholt's river") == ["bridge", "varnholt", "river"]
    scores = bm25_scores("granite walls", ["walls of granite", "a wooden hut", "granite"])
    assert scores[0] > scores[2] > scores[1] == 0.0


def test_chunks_respect_the_size_and_keep_all_text():
    ex = extract(PAGES[FACTS[0].slug])
    chunks = chunk_text(0, ex.text, 64, count_tokens, ex.title)
    assert len(chunks) > 5 and all(c.tokens <= 64 * 1.5 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert FACTS[0].answer in joined and [c.position for c in chunks] == list(range(len(chunks)))


def test_fusion_finds_the_planted_fact_on_a_five_page_subset(minilm):
    for fact in FACTS[:5]:
        chunks = _chunks([fact] + [f for f in FACTS[:5] if f is not fact])
        ranked = rank_chunks(fact.question, chunks, minilm, "fusion")
        assert ranked.method == "fusion" and not ranked.notes
        assert any(fact.answer in c.text for c in ranked.chunks[:5]), fact.question


def test_without_an_embedder_fusion_falls_back_to_bm25():
    chunks = _chunks(FACTS[:2])
    ranked = rank_chunks(FACTS[0].question, chunks, None, "fusion")
    assert ranked.method == "bm25" and "BM25" in ranked.notes[0]


def test_unavailable_embedding_model_warns_and_gives_none(caplog):
    with caplog.at_level(logging.WARNING):
        assert get_embedder("/nonexistent/embedding-model-dir") is None
    assert "unavailable" in caplog.text and "BM25" in caplog.text
    assert resolve_model("bm25") is None and resolve_model(None).endswith("model")


def test_select_fills_the_budget_skips_duplicates_and_groups_by_source():
    a = Chunk(0, 0, "alpha beta gamma delta epsilon zeta eta theta", 40)
    dup = Chunk(1, 0, "alpha beta gamma delta epsilon zeta eta theta", 40)  # mirrored page
    big = Chunk(1, 1, "a long chunk " * 30, 200)
    b = Chunk(0, 1, "iota kappa lambda mu nu xi omicron pi", 40)
    c = Chunk(2, 0, "rho sigma tau upsilon phi chi psi omega", 40)
    chosen = select([b, c, a, dup, big], budget=130)  # best first
    assert chosen == [a, b, c]  # source 0 (best chunk b) first, in page order; then source 2
    assert sum(x.tokens for x in chosen) <= 130 and dup not in chosen and big not in chosen


def test_near_duplicate_removal_can_be_seen_failing_without_it(monkeypatch):
    """Sabotage: with the duplicate threshold above 1, the mirrored chunk is taken twice."""
    import agentkit.plugins.web_search.rank as rank

    a = Chunk(0, 0, "the same syndicated paragraph about the bridge and its history", 20)
    dup = Chunk(1, 0, "the same syndicated paragraph about the bridge and its history", 20)
    assert select([a, dup], 100) == [a]
    monkeypatch.setattr(rank, "DUPLICATE_JACCARD", 1.01)
    assert select([a, dup], 100) == [a, dup]
