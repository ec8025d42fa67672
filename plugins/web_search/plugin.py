"""Built-in plugin: web search for requests that set `web_search_options` (runner-api.md §2.4).

Scope: `WebSearchPlugin` declares the Runner options `enable_search`, `search_callback` and
`search_embedding_model` (`runner_options`), reads them and its own settings
(`Runner(extra={"web_search": {...}})`, see `WebSearchSettings`) in `runner_configure`,
registers the default `ddgs` provider (`register_search_providers`), and offers the two tools to
each turn whose request sets `web_search_options` (`agent_request_tools`). A `search_callback`,
when given, is the provider (its errors give an empty result, logged, as in mistral.rs);
otherwise the provider named by the `provider` setting among all registered providers.
Settings: `Runner(plugins=[WebSearchPlugin(allow_private_addresses=True, ...)])`; an instance given
settings supersedes the built-in one on that Runner (the built-in then stays silent), so there
is one `ddgs` provider and one pair of tools per Runner.
Embeddings: `search_embedding_model`, else all-MiniLM-L6-v2 when `enable_search=True`, else
BM25 alone; the model loads in a background thread when the first request asks for web search.

Non-goals: the search machinery itself (the sibling modules), approvals (the loop).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from agentkit.config import RunnerConfig
from agentkit.hookspecs import hookimpl
from agentkit.plugins.web_search.embedder import Embedder, get_embedder, resolve_model
from agentkit.plugins.web_search.pipeline import WebSearch
from agentkit.plugins.web_search.providers import Provider, callback_provider, make_ddgs_provider
from agentkit.plugins.web_search.tools import result_budget, search_tools
from agentkit.plugins.web_search.types import WebSearchSettings
from agentkit.tools import Tool

__all__ = ["WebSearchPlugin"]

logger = logging.getLogger(__name__)

# which instance serves each Runner (keyed by its RunnerConfig's id, dropped when the config is)
_claims: dict[int, WebSearchPlugin] = {}
_claims_lock = threading.Lock()


class WebSearchPlugin:
    """The web-search tools; one instance per Runner. `settings` overrides `extra["web_search"]`."""

    plugin_name = "web_search"

    def __init__(self, settings: WebSearchSettings | Mapping[str, Any] | None = None, **options: Any) -> None:
        if options:
            settings = WebSearchSettings.from_mapping({**dict(settings or {}), **options}) \
                if not isinstance(settings, WebSearchSettings) else replace(settings, **options)
        if settings is not None and not isinstance(settings, WebSearchSettings):
            settings = WebSearchSettings.from_mapping(settings)
        self._own_settings = settings is not None
        self.settings: WebSearchSettings = settings or WebSearchSettings()
        self.callback: Callable[[str], Any] | None = None
        self.embedding_model: str | None = None
        self._embedder: Embedder | None = None
        self._loader: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._config_id: int | None = None

    @hookimpl
    def runner_options(self) -> list[str]:
        """This plugin serves `enable_search`, `search_callback` and `search_embedding_model`."""
        return ["enable_search", "search_callback", "search_embedding_model"]

    @hookimpl
    def runner_configure(self, config: RunnerConfig) -> None:
        """Take the Runner's search options (the embedding model loads with the first search request)."""
        if not self._own_settings:
            self.settings = WebSearchSettings.from_mapping(config.plugin_options("web_search"))
        self._config_id = id(config)
        with _claims_lock:
            holder = _claims.get(id(config))
            if holder is None:
                _claims[id(config)] = self
                weakref.finalize(config, _claims.pop, id(config), None)
            elif self._own_settings and not holder._own_settings:
                _claims[id(config)] = self
        if not self.active():
            return
        self.callback = config.search_callback
        name = config.search_embedding_model
        resolve_model(name)  # TypeError now, at Runner(...), for a value that is not a str
        if name is None and not config.enable_search:
            name = "bm25"
        self.embedding_model = name

    def _start_loading(self) -> None:
        """Load the embedding model in the background, once. Started by the first request that
        asks for web search, not at Runner start: by then the model is loaded, and importing
        sentence-transformers next to the Runner's own transformers import could race."""
        with self._start_lock:
            if self._loader is None and self.embedding_model not in ("bm25", "none", "off"):
                self._loader = threading.Thread(target=self._load, name="agentkit-search-embedder", daemon=True)
                self._loader.start()

    def active(self) -> bool:
        """True when this instance serves its Runner (False for a built-in superseded by a user's instance)."""
        with _claims_lock:
            holder = _claims.get(self._config_id) if self._config_id is not None else None
            return holder is None or holder is self

    def _load(self) -> None:
        self._embedder = get_embedder(self.embedding_model)

    def embedder(self) -> Embedder | None:
        """The embedding model (waits for the background load), or None for BM25-only ranking."""
        self._start_loading()
        if self._loader is not None:
            self._loader.join()
        return self._embedder

    @hookimpl
    def register_search_providers(self, register: Callable[..., None]) -> None:
        """Register the default provider, `ddgs` (ddgs is imported on the first search)."""
        if self.active():
            register("ddgs", make_ddgs_provider(self.settings))

    def provider(self, context: Any) -> Provider:
        """The callback when configured, else the registered provider named by the `provider` setting."""
        if self.callback is not None:
            return callback_provider(self.callback)
        providers = context.search_providers() if getattr(context, "search_providers", None) else {}
        name = self.settings.provider
        if name in providers:
            return providers[name]
        if name == "ddgs":
            return make_ddgs_provider(self.settings)
        raise ValueError(f"web_search provider {name!r} is not registered; registered providers: "
                         f"{sorted(providers)} (set Runner(extra={{'web_search': {{'provider': ...}}}}))")

    @hookimpl
    def agent_request_tools(self, context: Any) -> list[Tool] | None:
        """The search and extract tools when the request sets `web_search_options`."""
        options = context.request.web_search_options
        if options is None or not self.active():
            return None
        provider = self.provider(context)
        self._start_loading()

        def pipeline() -> WebSearch:
            return WebSearch(self.settings, provider, context.count_tokens,
                             result_budget(context, options, self.settings.budget_share),
                             embedder=self.embedder(), filters=options.filters, web_search_options=options,
                             fetch_url_queries=self.callback is None)

        return search_tools(options, lambda q: pipeline().search(q), lambda u: pipeline().extract(u))

    def __repr__(self) -> str:
        return f"WebSearchPlugin(provider={self.settings.provider!r}, callback={self.callback is not None})"
