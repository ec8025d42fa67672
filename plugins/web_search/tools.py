"""The two web-search tools as the model sees them (runner-api.md §2.4), and sizing their output.

Scope: `SEARCH_TOOL_NAME` / `EXTRACT_TOOL_NAME`, mistral.rs's default descriptions (plus one
sentence asking the model to cite sources by number), `search_tools(options, run_search,
run_extract)` -> the two strict `Tool`s (descriptions overridable by `search_description` /
`extract_description`, the user's location appended to the search description), and
`result_budget(context, options, share)`: the tokens one result may take, a share of the
model's *remaining* context (never more than the request's size cap or the loop's per-result
limit).

Non-goals: running searches (`agentkit.plugins.web_search.pipeline`), plugin wiring.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentkit.api.enums import AgentToolKind, AgentToolSource, SearchContextSize
from agentkit.tools import Tool, ToolResult

__all__ = ["EXTRACT_DESCRIPTION", "EXTRACT_TOOL_NAME", "SEARCH_DESCRIPTION", "SEARCH_TOOL_NAME", "result_budget",
           "search_tools"]

SEARCH_TOOL_NAME = "mistralrs_search_the_web"
EXTRACT_TOOL_NAME = "mistralrs_website_content_extractor"

SEARCH_DESCRIPTION = """This tool is used to search the web given a query.
If the user wants up-to-date information or you want to retrieve new information, call this tool.
If you call this tool, then you MUST complete your answer using the output.
The input can be a query. It should not be a URL. Either is fine.
Additionally, if you have any questions that require a follow-up, you can call this tool repeatedly.
Cite the sources you use by their "ref" number, like [1].

You should expect output like this:
{
    "sources": ["example.com", ...],
    "output": [
        {
            "ref": 1,
            "title": "...",
            "description": "...",
            "url": "...",
            "content": "...",
        },
        ...
    ]
}
"""

EXTRACT_DESCRIPTION = """This tool is used to extract the content of a website.
If the user wants information about a specific site or you want to extract the content of a specific site, call this tool.
The input must be a URL.
Additionally, if you have any questions that require a follow-up, you can call this tool repeatedly.

You should expect output like this:
{
    "output": [
        {
            "url": "...",
            "content": "...",
        },
        ...
    ]
}
"""

_SIZE_SHARE = {SearchContextSize.Low: 0.5, SearchContextSize.Medium: 1.0, SearchContextSize.High: 1.5}
_MIN_BUDGET = 64


def result_budget(context: Any, options: Any, share: float) -> int:
    """Tokens one search/extract result may take when the tool runs.

    `share` of `context.remaining_tokens()` (halved for `SearchContextSize.Low`, x1.5 for
    High, at most 90%), capped by the request's fixed size budget (`options.token_budget()`:
    4096 / 8192 / 16384) and by the loop's per-result limit (`context.output_budget()`).
    """
    size = getattr(options, "search_context_size", None)
    factor = 1.5 if getattr(options, "return_token_budget", None) == "unlimited" else (
        _SIZE_SHARE[size] if isinstance(size, SearchContextSize) else 1.0)
    from_remaining = int(context.remaining_tokens() * min(0.9, share * factor))
    cap = options.token_budget() if options is not None else 8192
    return max(_MIN_BUDGET, min(cap, from_remaining, context.output_budget()))


def _schema(arg: str, text: str) -> dict[str, Any]:
    return {"type": "object", "properties": {arg: {"type": "string", "description": text}}, "required": [arg],
            "additionalProperties": False}


def search_tools(options: Any, run_search: Callable[[str], dict[str, Any]],
                 run_extract: Callable[[str], dict[str, Any]]) -> list[Tool]:
    """The search and extract tools for one request's `WebSearchOptions` (runner-api §2.4)."""
    description = options.search_description or SEARCH_DESCRIPTION
    location = options.user_location
    if location is not None and hasattr(location, "description_suffix"):
        description = f"{description}\n{location.description_suffix()}"

    def as_result(answer: dict[str, Any]) -> ToolResult:
        ok = answer.get("status") in ("ok", "no_results")
        return ToolResult(json.dumps(answer, ensure_ascii=False), status="ok" if ok else "failed")

    def search(_name: str, arguments: dict[str, Any]) -> ToolResult:
        query = arguments.get("query")
        if not isinstance(query, str):
            return as_result({"status": "error", "sources": [], "output": [],
                              "error": 'the "query" argument must be a string, e.g. {"query": "weather in Paris"}'})
        return as_result(run_search(query))

    def extract(_name: str, arguments: dict[str, Any]) -> ToolResult:
        url = arguments.get("url")
        if not isinstance(url, str):
            return as_result({"status": "error", "sources": [], "output": [],
                              "error": 'the "url" argument must be a string, e.g. {"url": "https://example.com"}'})
        return as_result(run_extract(url))

    return [Tool(SEARCH_TOOL_NAME, description, _schema("query", "A query for web searching."), search,
                 strict=True, source=AgentToolSource.BuiltIn, kind=AgentToolKind.WebSearch, label="Web search"),
            Tool(EXTRACT_TOOL_NAME, options.extract_description or EXTRACT_DESCRIPTION,
                 _schema("url", "A URL to extract the content of the website from."), extract,
                 strict=True, source=AgentToolSource.BuiltIn, kind=AgentToolKind.WebSearch,
                 label="Website content extractor")]
