"""Search providers: the default ddgs provider, and the adapter for a user's `search_callback`.

Scope: `ddgs_provider(query, options)` (ddgs imported lazily, backend from the settings; a
refusal by the engine, i.e. HTTP 202/403/429 or a captcha page, raises `SearchRateLimited`
instead of ddgs's "No results found."), `make_ddgs_provider(settings)`, and
`callback_provider(callback)` (wraps mistral.rs's `search_callback(query) -> list[dict]`).
A provider is `provider(query, options: ProviderOptions) -> list[SearchResult]`; the plugin
registers `ddgs` through `register_search_providers`, and other plugins can register more.

Non-goals: fetching result pages (`agentkit.plugins.web_search.fetch`), ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentkit.plugins.web_search.fetch import looks_rate_limited
from agentkit.plugins.web_search.types import (
    ProviderOptions,
    SearchRateLimited,
    SearchResult,
    WebSearchSettings,
)

__all__ = ["Provider", "callback_provider", "make_ddgs_provider"]

logger = logging.getLogger(__name__)

Provider = Callable[[str, ProviderOptions], list[SearchResult]]


class _RecordingClient:
    """Wraps a ddgs engine's HTTP client to remember refusals (ddgs turns them into 'no results')."""

    def __init__(self, inner: Any, refusals: list[str], engine: str) -> None:
        self._inner, self._refusals, self._engine = inner, refusals, engine

    def request(self, *args: Any, **kwargs: Any) -> Any:
        resp = self._inner.request(*args, **kwargs)
        status = getattr(resp, "status_code", 200)
        if status in (202, 403, 429) or looks_rate_limited(status, getattr(resp, "text", "") or ""):
            self._refusals.append(f"{self._engine}: HTTP {status}")
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def make_ddgs_provider(settings: WebSearchSettings) -> Provider:
    """The ddgs provider for `settings.ddgs_backend` (ddgs is imported on the first search)."""

    def ddgs_provider(query: str, options: ProviderOptions) -> list[SearchResult]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException, RatelimitException

        refusals: list[str] = []

        class RecordingDDGS(DDGS):  # type: ignore[misc]
            def _get_engines(self, category: str, backend: str) -> list[Any]:
                engines = super()._get_engines(category, backend)
                for e in engines:
                    if not isinstance(e.http_client, _RecordingClient):
                        e.http_client = _RecordingClient(  # type: ignore[assignment]
                            e.http_client, refusals, getattr(e, "name", "?"))
                return engines

        timeout = max(1, int(round(options.timeout_secs)))
        try:
            rows = RecordingDDGS(timeout=timeout).text(query, region=options.region, max_results=options.max_results,
                                                        backend=settings.ddgs_backend)
        except RatelimitException as exc:
            raise SearchRateLimited(f"the search engine refused the query (rate limit): {exc}") from None
        except DDGSException as exc:
            if refusals:
                raise SearchRateLimited("the search engine refused the query (rate limit or captcha: "
                                        f"{', '.join(refusals)}); this is not an empty result") from None
            if "no results" in str(exc).lower():
                return []
            raise
        return [SearchResult.coerce(r) for r in rows][: options.max_results]

    return ddgs_provider


def callback_provider(callback: Callable[[str], Any]) -> Provider:
    """mistral.rs's `search_callback(query) -> list[dict]` as a provider (results normalised)."""

    def provider(query: str, options: ProviderOptions) -> list[SearchResult]:
        rows = callback(query)
        if rows is None:
            return []
        if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
            raise TypeError(f"search_callback must return a list of dicts, got {type(rows).__name__}")
        return [SearchResult.coerce(r) for r in rows]

    return provider
