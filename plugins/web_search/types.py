"""Values shared by the web-search plugin's stages: results, per-source statuses, settings.

Scope: `SearchResult` (what a provider returns: title, url, description, optional content),
`Source` (one fetched page with its `SourceStatus`), `ProviderOptions` (what a provider is
asked for), `WebSearchSettings` (the plugin's own options, from `Runner(extra={"web_search":
{...}})`), and `SearchRateLimited` (a provider was refused, as opposed to finding nothing).

Non-goals: fetching, extracting, ranking or formatting (their own modules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

__all__ = [
    "ProviderOptions",
    "SearchRateLimited",
    "SearchResult",
    "Source",
    "SourceStatus",
    "WebSearchSettings",
]

SourceStatus = Literal["ok", "timeout", "http_error", "rate_limited", "empty", "blocked", "error"]
"""How one source went: `ok` (text extracted), `timeout` (no full page within the per-page
timeout), `http_error` (4xx/5xx other than a rate limit), `rate_limited` (429, or a 202/403/503
captcha or "unusual traffic" page), `empty` (no main text, e.g. a JavaScript-only shell),
`blocked` (refused by the SSRF guard or a domain filter), `error` (connection or other failure)."""


class SearchRateLimited(RuntimeError):
    """A search provider refused the query (rate limit or captcha): not the same as no results."""


@dataclass
class SearchResult:
    """One search hit. `content` empty means "fetch `url` and extract its text"."""

    title: str
    url: str
    description: str = ""
    content: str = ""

    @classmethod
    def coerce(cls, value: Any) -> SearchResult:
        """A `SearchResult` from itself or a mapping with title/url (or href)/description (or body)/content.

        Raises TypeError naming the expected shape for anything else.
        """
        if isinstance(value, SearchResult):
            return value
        if isinstance(value, Mapping):
            def text(*keys: str) -> str:
                for key in keys:
                    v = value.get(key)
                    if v is not None:
                        return str(v)
                return ""
            return cls(title=text("title"), url=text("url", "href", "link"),
                       description=text("description", "body", "snippet"), content=text("content"))
        raise TypeError("a search result must be a SearchResult or a dict with keys 'title', 'url', "
                        f"'description', 'content'; got {type(value).__name__}")


@dataclass
class Source:
    """One numbered source of a search (`ref` is what the answer cites as [ref])."""

    ref: int
    title: str
    url: str
    description: str = ""
    text: str = ""
    status: SourceStatus = "ok"
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ProviderOptions:
    """What a provider is asked for: `provider(query, options) -> list[SearchResult]`."""

    max_results: int = 10
    timeout_secs: float = 10.0
    region: str = "us-en"
    web_search_options: Any = None


@dataclass(frozen=True)
class WebSearchSettings:
    """The plugin's own options: `Runner(extra={"web_search": {name: value}})`.

    - `provider`: name of the search provider to use when no `search_callback` is set ("ddgs").
    - `ddgs_backend`: ddgs backend(s), e.g. "duckduckgo" (mistral.rs's engine) or "auto".
    - `max_results`: results asked of the provider (mistral.rs: 10).
    - `page_timeout_secs`: wall-clock limit for one page (connect + read); pages run concurrently,
      so a search waits at most about this long for its pages.
    - `max_page_bytes`: bytes read per page; the rest is dropped.
    - `allow_private_addresses`: let the fetcher reach loopback, private, link-local and reserved
      addresses (off by default: SSRF guard).
    - `budget_share`: share of the model's remaining context one tool result may fill.
    - `chunk_tokens`: target chunk size for ranking.
    """

    provider: str = "ddgs"
    ddgs_backend: str = "duckduckgo"
    max_results: int = 10
    page_timeout_secs: float = 10.0
    max_page_bytes: int = 2_000_000
    allow_private_addresses: bool = False
    budget_share: float = 0.5
    chunk_tokens: int = 128
    user_agent: str = "agentkit-web-search/0.1 (+https://github.com/agentkit)"

    def __post_init__(self) -> None:
        for name in ("max_results", "max_page_bytes", "chunk_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"web_search option {name!r} must be a positive int, got {v!r}")
        t = self.page_timeout_secs
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError(f"web_search option 'page_timeout_secs' must be a positive number, got {t!r}")
        s = self.budget_share
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 1:
            raise ValueError(f"web_search option 'budget_share' must be in (0, 1], got {s!r}")
        if not isinstance(self.allow_private_addresses, bool):
            raise TypeError("web_search option 'allow_private_addresses' must be a bool, "
                            f"got {self.allow_private_addresses!r}")
        for name in ("provider", "ddgs_backend", "user_agent"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"web_search option {name!r} must be a non-empty str")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> WebSearchSettings:
        """Settings from `extra["web_search"]`; ValueError naming an unknown key and the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown web_search option(s) {unknown}: known options are {sorted(known)}")
        return cls(**dict(options))


DEFAULT_SETTINGS = WebSearchSettings()
