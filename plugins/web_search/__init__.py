"""Built-in web-search plugin (`agentkit.plugins.web_search`): mistral.rs's two search tools, better.

Scope: re-exports `WebSearchPlugin` (registered by default, see
`agentkit.plugin_manager.DEFAULT_PLUGINS`), `WebSearchSettings`, `SearchResult` and the tool
names. Modules, one stage each: `types` (values), `providers` (ddgs, `search_callback`),
`netguard` (SSRF guard), `fetch` (concurrent pages, statuses), `extract` (main content),
`bm25`, `embedder` (all-MiniLM-L6-v2), `rank` (chunks, fusion, dedup, budget), `pipeline`
(one search end to end), `tools` (schemas, descriptions, budget), `plugin` (hooks).
Heavy dependencies (ddgs, lxml, sentence-transformers, torch) load on first use.

Non-goals: the agent loop, other tool kinds.
"""

from agentkit.plugins.web_search.plugin import WebSearchPlugin
from agentkit.plugins.web_search.tools import EXTRACT_TOOL_NAME, SEARCH_TOOL_NAME
from agentkit.plugins.web_search.types import SearchRateLimited, SearchResult, WebSearchSettings

__all__ = ["EXTRACT_TOOL_NAME", "SEARCH_TOOL_NAME", "SearchRateLimited", "SearchResult", "WebSearchPlugin",
           "WebSearchSettings"]
