"""Score fusion of BM25 and embeddings: the order on small constructed cases, the candidate cap, bad input."""

from __future__ import annotations

import pytest

import agentkit.plugins.web_search.rank as rank
from agentkit.plugins.web_search.rank import Chunk, fuse_scores, rank_chunks
from agentkit.testing.search_site import FACTS


class FakeEmbedder:
    """Similarities looked up by passage text (0.0 for unknown ones); records what it was asked to embed."""

    def __init__(self, sims: dict[str, float]) -> None:
        self.sims = sims
        self.asked: list[list[str]] = []

    def similarities(self, query: str, passages: list[str]) -> list[float]:
        self.asked.append(list(passages))
        return [self.sims.get(p, 0.0) for p in passages]


# c0 answers the question in other words (no query term: BM25 0) and the embedding is sure of it;
# c1..c3 repeat the query's words without answering it.
QUERY = "who designed the harbour bridge"
TEXTS = [
    "The plans were drawn up by the engineer Oskar Quist.",
    "The harbour bridge crosses the estuary; the bridge is painted green.",
    "Harbour bridge tolls: the harbour bridge charges cars at both ends of the bridge.",
    "A harbour cafe sells tea.",
]
SIMS = {TEXTS[0]: 0.9, TEXTS[1]: 0.5, TEXTS[2]: 0.4, TEXTS[3]: 0.3}


def _chunks(texts: list[str]) -> list[Chunk]:
    return [Chunk(0, i, t, 12) for i, t in enumerate(texts)]


def test_a_confident_paraphrase_match_leads_the_fusion_where_rank_fusion_buries_it():
    chunks = _chunks(TEXTS)
    fused = rank_chunks(QUERY, chunks, FakeEmbedder(SIMS), "fusion")
    assert fused.method == "fusion" and [c.position for c in fused.chunks] == [0, 1, 2, 3]
    rrf = rank_chunks(QUERY, chunks, FakeEmbedder(SIMS), "rrf")
    assert rrf.chunks[0].position != 0  # reciprocal-rank fusion gives the chunk no BM25 vote at all


def test_fuse_scores_weights_z_scores():
    dense, bm25 = [0.9, 0.5, 0.4, 0.3], [0.0, 5.0, 6.0, 1.0]
    fused = fuse_scores(bm25, dense)
    assert sorted(range(4), key=lambda i: -fused[i]) == [0, 1, 2, 3]
    assert fuse_scores(bm25, dense, dense_weight=0.0) == pytest.approx(fuse_scores(bm25, [0.0] * 4, 0.0))
    # with equal weights BM25's two matches outvote the embedding's pick
    half = fuse_scores(bm25, dense, dense_weight=0.5)
    assert max(range(4), key=lambda i: half[i]) == 1
    # a ranker whose scores do not vary adds nothing (no query term anywhere: dense order alone)
    flat = fuse_scores([0.0] * 4, dense)
    assert sorted(range(4), key=lambda i: -flat[i]) == [0, 1, 2, 3] and sum(flat) == pytest.approx(0.0)


def test_an_exact_name_only_bm25_finds_is_lifted_in_the_dense_order():
    texts = [f"A note about the station and its timetable number {i}." for i in range(6)]
    texts.append("The station was paid for by Casimir Harrowby.")
    sims = {t: 0.50 + 0.01 * i for i, t in enumerate(texts[:6])} | {texts[6]: 0.52}
    query = "which station was paid for by casimir harrowby"
    alone = rank_chunks(query, _chunks(texts), FakeEmbedder(sims), "embedding")
    fused = rank_chunks(query, _chunks(texts), FakeEmbedder(sims), "fusion")
    assert [c.position for c in alone.chunks].index(6) == 4
    assert [c.position for c in fused.chunks].index(6) == 2
    # the limit of weighting the embedding 0.8: one it ranks last by a clear margin stays low
    sims[texts[6]] = 0.40
    assert [c.position for c in rank_chunks(query, _chunks(texts), FakeEmbedder(sims)).chunks].index(6) >= 5


def test_only_bm25s_best_chunks_are_embedded_and_the_rest_follow_in_bm25_order(monkeypatch):
    monkeypatch.setattr(rank, "MAX_EMBEDDED", 2)
    texts = ["bridge bridge bridge", "bridge bridge", "bridge", "nothing here"]
    emb = FakeEmbedder({"bridge": 0.99, "bridge bridge": 0.1, "bridge bridge bridge": 0.2})
    ranked = rank_chunks("bridge", _chunks(texts), emb, "fusion")
    assert emb.asked == [texts[:2]]
    assert [c.position for c in ranked.chunks] == [0, 1, 2, 3]


@pytest.mark.parametrize("bad", [
    lambda: fuse_scores([1.0, 2.0], [0.5]),
    lambda: fuse_scores([1.0], [0.5], dense_weight=1.5),
    lambda: rank_chunks("q", _chunks(["a"]), FakeEmbedder({}), "cosine"),  # type: ignore[arg-type]
])
def test_bad_input_is_a_value_error_that_says_what_was_wrong(bad):
    with pytest.raises(ValueError, match="score|dense_weight|method"):
        bad()


def test_lookups_by_exact_value_reach_the_top_five_on_a_five_page_subset(minilm):
    from tests.plugins.web_search.test_rank import _chunks as page_chunks

    for fact in FACTS[:5]:
        chunks = page_chunks([fact] + [f for f in FACTS[:5] if f is not fact])
        ranked = rank_chunks(fact.lookup, chunks, minilm, "fusion")
        assert any(fact.answer in c.text for c in ranked.chunks[:5]), fact.lookup
