"""One web search or page extraction, end to end: provider, filters, fetch, extract, rank, budget.

Scope: `WebSearch` (built per request by the plugin) with `search(query)` and `extract(url)`,
each returning the JSON-ready dict the tools send to the model (runner-api §2.4 shape plus
numbered `ref`s, a top-level `status` and the per-source statuses of sources that failed), and
`domain_allowed(url, filters)` (allowed/blocked domains, subdomains included).

Status words: `ok`, `no_results` (the provider found nothing), `rate_limited` (the provider
refused: never reported as no results), `error` (the provider or callback failed; logged, and the
output is empty as in mistral.rs).

Non-goals: tool schemas and descriptions (`agentkit.plugins.web_search.tools`), plugin wiring.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentkit.plugins.web_search.embedder import Embedder
from agentkit.plugins.web_search.extract import extract, text_from_plain
from agentkit.plugins.web_search.fetch import Page, fetch_pages
from agentkit.plugins.web_search.providers import Provider
from agentkit.plugins.web_search.rank import Method, chunk_text, rank_chunks, select
from agentkit.plugins.web_search.types import (
    ProviderOptions,
    SearchRateLimited,
    SearchResult,
    Source,
    WebSearchSettings,
)

__all__ = ["WebSearch", "domain_allowed", "source_domain"]

logger = logging.getLogger(__name__)

_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_JSON_OVERHEAD = 48  # braces, keys and status words of the result object
_MIN_JS_TEXT = 40


def source_domain(url: str) -> str:
    """The host of `url`, lower-case, without "www." (mistral.rs's `source_domain`); "" if none."""
    host = (urllib.parse.urlsplit(url).hostname or "").rstrip(".").lower()
    return host[4:] if host.startswith("www.") else host


def domain_allowed(url: str, filters: Mapping[str, Any] | None) -> bool:
    """True when `url` passes `allowed_domains` / `blocked_domains` (a domain matches its subdomains)."""
    if not filters:
        return True
    host = source_domain(url)

    def matches(domains: Any) -> bool:
        return any(host == d or host.endswith("." + d) for d in (source_domain(f"http://{x}") or x.lower()
                                                                 for x in domains or ()))
    allowed = filters.get("allowed_domains")
    if allowed and not matches(allowed):
        return False
    return not matches(filters.get("blocked_domains"))


def _page_text(page: Page) -> tuple[str, str, str]:
    """(title, text, empty-detail) of a fetched page."""
    if page.content_type in ("text/html", "application/xhtml+xml", ""):
        ex = extract(page.body)
        detail = ""
        if len(ex.text) < _MIN_JS_TEXT:
            scripts = page.body.lower().count("<script")
            detail = ("no readable text: the page is a JavaScript shell (content rendered in the browser)"
                      if scripts else "no readable text on the page")
        return ex.title, ex.text, detail
    if page.content_type.startswith("text/"):
        text = text_from_plain(page.body)
        return "", text, "" if text else "empty document"
    return "", "", f"unsupported content type {page.content_type}"


@dataclass
class WebSearch:
    """Search and extraction for one request: `count_tokens` is the model's tokenizer, `budget` tokens per result."""

    settings: WebSearchSettings
    provider: Provider
    count_tokens: Callable[[str], int]
    budget: int
    embedder: Embedder | None = None
    filters: Mapping[str, Any] | None = None
    method: Method = "fusion"
    web_search_options: Any = None
    fetch_url_queries: bool = True  # a query that is a URL is fetched, not searched (not with a search_callback)
    last: dict[str, Any] = field(default_factory=dict)  # timings and ranking notes of the last call

    def _fetch(self, sources: list[Source]) -> None:
        todo = [s for s in sources if not s.text and s.status == "ok"]
        for s, page in zip(todo, fetch_pages([s.url for s in todo], self.settings)):
            s.seconds = page.seconds
            if page.status != "ok":
                s.status, s.detail = page.status, page.detail
                continue
            title, text, detail = _page_text(page)
            s.title = s.title or title or s.url
            if detail:
                s.status, s.detail = "empty", detail
            else:
                s.text = text

    def _sources(self, results: list[SearchResult]) -> list[Source]:
        sources: list[Source] = []
        for r in results:
            src = Source(len(sources) + 1, r.title, r.url, r.description, r.content.strip())
            if not src.text and not _URL.match(r.url or ""):
                src.status, src.detail = "empty", "the result has no content and no http(s) URL to fetch"
            if r.url and _URL.match(r.url) and not domain_allowed(r.url, self.filters):
                continue
            sources.append(src)
        for i, s in enumerate(sources, start=1):
            s.ref = i
        return sources

    def _overhead(self, s: Source) -> int:
        return self.count_tokens(f"{s.title} {s.url} {s.description}") + 16

    def _answer(self, status: str, query: str, sources: list[Source], **extra: Any) -> dict[str, Any]:
        ok = [s for s in sources if s.status == "ok" and s.text]
        chunks = [c for s in ok for c in chunk_text(s.ref, s.text, self.settings.chunk_tokens, self.count_tokens,
                                                     s.title)]
        ranking = rank_chunks(query, chunks, self.embedder, self.method)
        by_ref = {s.ref: s for s in sources}
        chosen = select(ranking.chunks, max(0, int(self.budget * 0.92) - _JSON_OVERHEAD),
                        lambda ref: self._overhead(by_ref[ref]))
        self.last.update(rank_seconds=ranking.seconds, method=ranking.method, notes=ranking.notes,
                         chunks=len(chunks))
        failed = [{"ref": s.ref, "url": s.url, "status": s.status, "detail": s.detail}
                  for s in sources if s.status != "ok"]
        if status == "ok" and not chosen:
            kinds = {f["status"] for f in failed}
            status = "no_results" if not failed else kinds.pop() if len(kinds) == 1 else "no_content"
        rank_of = {id(c): i for i, c in enumerate(ranking.chunks)}
        while True:  # the estimate above is close; the exact JSON size decides
            answer = self._render(status, by_ref, chosen, failed, extra)
            if not chosen or self.count_tokens(json.dumps(answer, ensure_ascii=False)) <= self.budget:
                return answer
            worst = max(chosen, key=lambda c: rank_of[id(c)])
            chosen = [c for c in chosen if c is not worst]

    @staticmethod
    def _render(status: str, by_ref: dict[int, Source], chosen: list[Any], failed: list[dict[str, Any]],
                extra: dict[str, Any]) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        for c in chosen:
            if output and output[-1]["ref"] == c.source:
                output[-1]["content"] += "\n\n" + c.text
                continue
            s = by_ref[c.source]
            output.append({"ref": s.ref, "title": s.title, "description": s.description, "url": s.url,
                           "content": c.text})
        domains: list[str] = []
        for item in output:
            d = source_domain(item["url"]) or item["url"]
            if d not in domains:
                domains.append(d)
        answer: dict[str, Any] = {"status": status, "sources": domains, "output": output}
        if failed:
            answer["unavailable"] = failed
        answer.update(extra)
        return answer

    def search(self, query: str) -> dict[str, Any]:
        """Run one search; never raises for provider, network or page failures (they become statuses)."""
        self.last = {}
        query = (query or "").strip()
        if not query:
            return {"status": "error", "sources": [], "output": [], "error": "the query is empty"}
        start = time.perf_counter()
        bare = query.strip("\"'")
        if self.fetch_url_queries and _URL.match(bare):
            results = [SearchResult(title="", url=bare)]
        else:
            options = ProviderOptions(self.settings.max_results, self.settings.page_timeout_secs,
                                      web_search_options=self.web_search_options)
            try:
                results = [SearchResult.coerce(r) for r in self.provider(query, options) or []]
            except SearchRateLimited as exc:
                logger.warning("web search rate limited for %r: %s", query, exc)
                return {"status": "rate_limited", "sources": [], "output": [],
                        "error": f"{exc}. The search was refused, not empty: wait before searching again."}
            except Exception as exc:
                logger.error("web search provider failed for %r: %s: %s", query, type(exc).__name__, exc)
                return {"status": "error", "sources": [], "output": [],
                        "error": f"search failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        sources = self._sources(results)
        self._fetch(sources)
        self.last["fetch_seconds"] = time.perf_counter() - start
        return self._answer("ok", query, sources)

    def extract(self, url: str) -> dict[str, Any]:
        """Fetch `url` and return its main text, capped to the budget (head kept); statuses as for search."""
        self.last = {}
        url = (url or "").strip().strip("\"'")
        if not _URL.match(url):
            return {"status": "error", "sources": [], "output": [], "error": f"not an http(s) URL: {url!r}"}
        source = Source(1, "", url)
        if not domain_allowed(url, self.filters):
            source.status, source.detail = "blocked", "the domain is excluded by the request's domain filters"
        else:
            self._fetch([source])
        out: dict[str, Any] = {"status": source.status, "sources": [source_domain(url)], "output": []}
        if source.status != "ok":
            out["output"] = [{"ref": 1, "url": url, "status": source.status, "detail": source.detail}]
            return out
        budget = max(0, int(self.budget * 0.92) - _JSON_OVERHEAD - self._overhead(source))
        kept, used, truncated = [], 0, False
        for chunk in chunk_text(1, source.text, self.settings.chunk_tokens, self.count_tokens):
            if used + chunk.tokens > budget:
                truncated = True
                break
            kept.append(chunk.text)
            used += chunk.tokens
        out["output"] = [{"ref": 1, "title": source.title, "url": url, "content": "\n\n".join(kept)}]
        if truncated:
            out["truncated"] = f"the page continues beyond the {self.budget}-token budget; {used} tokens shown"
        return out
