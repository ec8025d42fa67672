"""The plugin's wiring: options, providers, the two tools (descriptions, overrides, location),
the budget from the remaining context, and a Runner (tiny Llama) running a forced search."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from agentkit import (
    ApproximateUserLocation,
    ChatCompletionRequest,
    Runner,
    WebSearchOptions,
    WebSearchUserLocation,
    Which,
)
from agentkit.api.enums import AgentToolKind, SearchContextSize
from agentkit.config import RunnerConfig
from agentkit.errors import NotSupportedError
from agentkit.plugin_manager import DEFAULT_PLUGINS
from agentkit.plugins.web_search import EXTRACT_TOOL_NAME, SEARCH_TOOL_NAME, WebSearchPlugin
from agentkit.plugins.web_search.tools import EXTRACT_DESCRIPTION, SEARCH_DESCRIPTION, result_budget
from agentkit.testing.search_site import FACTS
from agentkit.testing.search_site import approx_tokens as count_tokens

NOTES = [{"title": "Ledger note", "description": "archive", "url": "https://archive.example.org/ledgers",
          "content": "The Kettleby archive keeps its ledgers in a cellar under the old mill."}]


def _context(options, max_seq_len=8192, prompt_tokens=100, output_tokens=2048, providers=None):
    req = types.SimpleNamespace(web_search_options=options)
    return types.SimpleNamespace(
        request=req, count_tokens=count_tokens, remaining_tokens=lambda: max(0, max_seq_len - prompt_tokens),
        output_budget=lambda: output_tokens, search_providers=(lambda: providers or {}))


def _configured(**kw) -> WebSearchPlugin:
    plugin = WebSearchPlugin(kw.pop("settings", None))
    plugin.runner_configure(RunnerConfig(**kw))
    return plugin


def test_registered_as_a_built_in_and_serves_the_search_options():
    assert "agentkit.plugins.web_search:WebSearchPlugin" in DEFAULT_PLUGINS
    assert WebSearchPlugin().runner_options() == ["enable_search", "search_callback", "search_embedding_model"]


def test_disabling_the_built_in_makes_search_options_unsupported(monkeypatch, tiny_llama):
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "web_search")
    with pytest.raises(NotSupportedError, match="enable_search"):
        Runner(Which.Plain(tiny_llama), progress=False, enable_search=True)


def test_importing_the_plugin_loads_no_heavy_dependency():
    code = ("import sys, agentkit, agentkit.plugins.web_search; "
            "heavy = [m for m in ('torch', 'ddgs', 'lxml', 'sentence_transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_tools_only_when_the_request_sets_web_search_options():
    plugin = _configured(search_callback=lambda q: NOTES)
    assert plugin.agent_request_tools(_context(None)) is None
    tools = plugin.agent_request_tools(_context(WebSearchOptions()))
    assert [t.name for t in tools] == [SEARCH_TOOL_NAME, EXTRACT_TOOL_NAME]
    search, extract = tools
    assert search.description == SEARCH_DESCRIPTION and extract.description == EXTRACT_DESCRIPTION
    assert search.strict and search.kind == AgentToolKind.WebSearch
    assert search.parameters["required"] == ["query"] and extract.parameters["required"] == ["url"]


def test_description_overrides_and_the_user_location_suffix():
    loc = WebSearchUserLocation.approximate(ApproximateUserLocation("Lyon", "France", "Auvergne", "Europe/Paris"))
    opts = WebSearchOptions(user_location=loc, search_description="Local filesystem search",
                            extract_description="Read a page")
    search, extract = _configured().agent_request_tools(_context(opts))
    assert search.description == ("Local filesystem search\n"
                                  "The user's location is: Lyon, Auvergne, France, Europe/Paris.")
    assert extract.description == "Read a page"


def test_search_callback_is_the_provider_and_its_result_has_numbered_sources():
    seen = []
    plugin = _configured(search_callback=lambda q: seen.append(q) or NOTES)
    search, _ = plugin.agent_request_tools(_context(WebSearchOptions()))
    result = search.fn(SEARCH_TOOL_NAME, {"query": "where are the ledgers"})
    answer = json.loads(result.content)
    assert seen == ["where are the ledgers"] and result.status == "ok"
    assert answer["sources"] == ["archive.example.org"]
    assert answer["output"][0]["ref"] == 1 and "cellar" in answer["output"][0]["content"]
    search.fn(SEARCH_TOOL_NAME, {"query": "https://kettleby.example.org/"})  # a URL goes to the callback too
    assert seen[-1] == "https://kettleby.example.org/"  # (as in mistral.rs; SmolLM2 often searches URLs)
    bad = search.fn(SEARCH_TOOL_NAME, {"query": 3})
    assert bad.status == "failed" and "must be a string" in json.loads(bad.content)["error"]


def test_budget_is_a_share_of_the_remaining_context_not_a_fixed_8192():
    opts = WebSearchOptions()
    assert result_budget(_context(opts, 8192, 192, 4096), opts, 0.5) == 4000
    assert result_budget(_context(opts, 8192, 7692, 4096), opts, 0.5) == 250
    assert result_budget(_context(opts, 128000, 1000, 100000), opts, 0.5) == 8192  # the Medium cap
    low = WebSearchOptions(search_context_size=SearchContextSize.Low)
    assert result_budget(_context(low, 8192, 192, 4096), low, 0.5) == 2000
    assert result_budget(_context(opts, 8192, 8192, 4096), opts, 0.5) == 64  # never zero
    assert result_budget(_context(opts, 8192, 0, 1000), opts, 0.5) == 1000  # the loop's per-result limit


def test_the_result_shrinks_with_the_remaining_context(site):
    plugin = _configured(settings={"allow_private_addresses": True, "page_timeout_secs": 2.0})
    lots = [{"title": f.title, "url": site.url(f"/page/{f.slug}")} for f in FACTS[:6]]
    plugin.callback = lambda q: lots
    sizes = []
    for prompt_tokens in (1000, 7000):
        search, _ = plugin.agent_request_tools(_context(WebSearchOptions(), 8192, prompt_tokens))
        content = search.fn(SEARCH_TOOL_NAME, {"query": FACTS[0].question}).content
        sizes.append(count_tokens(content))
        assert count_tokens(content) <= max(64, (8192 - prompt_tokens) // 2)
    assert sizes[0] > 2 * sizes[1]


def test_a_user_instance_with_settings_supersedes_the_built_in():
    config = RunnerConfig(enable_search=False)
    builtin, mine = WebSearchPlugin(), WebSearchPlugin(allow_private_addresses=True)
    builtin.runner_configure(config)
    mine.runner_configure(config)
    assert mine.active() and not builtin.active()
    assert builtin.agent_request_tools(_context(WebSearchOptions())) is None
    registered = []
    builtin.register_search_providers(lambda name, p: registered.append(name))
    mine.register_search_providers(lambda name, p: registered.append(name))
    assert registered == ["ddgs"]


def test_a_bad_embedding_model_value_fails_at_configure():
    with pytest.raises(TypeError, match="search_embedding_model must be a str"):
        _configured(search_embedding_model=3)


def test_an_unknown_provider_name_is_a_clear_error():
    plugin = _configured(settings={"provider": "searx"})
    with pytest.raises(ValueError, match="'searx' is not registered"):
        plugin.agent_request_tools(_context(WebSearchOptions(), providers={"ddgs": None}))


def test_a_registered_provider_is_used_by_name():
    calls = []

    def mine(query, options):
        calls.append((query, options.max_results))
        return NOTES

    plugin = _configured(settings={"provider": "mine", "max_results": 3})
    search, _ = plugin.agent_request_tools(_context(WebSearchOptions(), providers={"mine": mine}))
    assert "cellar" in search.fn(SEARCH_TOOL_NAME, {"query": "ledgers"}).content and calls == [("ledgers", 3)]


def test_an_unavailable_embedding_model_falls_back_to_bm25(caplog):
    plugin = _configured(enable_search=True, search_embedding_model="/nonexistent/model", search_callback=lambda q: NOTES)
    assert plugin.embedder() is None
    search, _ = plugin.agent_request_tools(_context(WebSearchOptions()))
    assert "cellar" in search.fn(SEARCH_TOOL_NAME, {"query": "ledgers"}).content
    assert "unavailable" in caplog.text


def test_a_runner_runs_a_forced_search_through_the_agent_loop(tiny_llama):
    seen = []

    def local_search(query):
        seen.append(query)
        return NOTES

    # the tiny model's 512-token window is too small for the tool descriptions and a call
    with Runner(Which.Plain(tiny_llama), progress=False, search_callback=local_search, max_seq_len=4096) as r:
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages="Where are the Kettleby ledgers kept?", max_tokens=120, max_tool_rounds=1,
            tool_choice={"type": "function", "function": {"name": SEARCH_TOOL_NAME}},
            web_search_options=WebSearchOptions(search_description="Local search", extract_description="Read a page.")))
        assert [c.name for c in resp.agentic_tool_calls] == [SEARCH_TOOL_NAME] and len(seen) == 1
        stored = json.loads(r.export_session(resp.session_id))["messages"]
        tool_msg = next(m for m in stored if m["role"] == "tool")
        assert "cellar" in json.loads(tool_msg["content"])["output"][0]["content"]
        plain = r.send_chat_completion_request(ChatCompletionRequest(model="x", messages="Hi", max_tokens=4))
        assert not plain.agentic_tool_calls and len(seen) == 1
