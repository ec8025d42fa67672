"""A search end to end on the fixture site: ddgs, statuses, rate limits, filters, budget, extraction."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from agentkit.plugins.web_search.pipeline import WebSearch, domain_allowed
from agentkit.plugins.web_search.providers import callback_provider, make_ddgs_provider
from agentkit.plugins.web_search.types import ProviderOptions, SearchRateLimited, WebSearchSettings
from agentkit.testing.search_site import FACTS
from agentkit.testing.search_site import approx_tokens as count_tokens


def _search(settings, budget=1024, provider=None, **kw) -> WebSearch:
    return WebSearch(settings, provider or make_ddgs_provider(settings), count_tokens, budget, **kw)


def test_ddgs_aimed_at_the_site_returns_its_pages(ddgs_site, allow_local):
    results = make_ddgs_provider(allow_local)(FACTS[0].question, ProviderOptions(max_results=5))
    assert 1 <= len(results) <= 5 and results[0].url == ddgs_site.url(f"/page/{FACTS[0].slug}")
    assert results[0].title == FACTS[0].title and results[0].description


def test_search_answers_with_numbered_cited_sources_within_budget(ddgs_site, allow_local, minilm):
    for fact in FACTS[:3]:
        answer = _search(allow_local, embedder=minilm).search(fact.question)
        assert answer["status"] == "ok"
        assert fact.answer in "\n".join(o["content"] for o in answer["output"]), fact.question
        refs = [o["ref"] for o in answer["output"]]
        assert len(set(refs)) == len(refs) and all(1 <= r <= 10 for r in refs)
        assert set(answer["output"][0]) == {"ref", "title", "description", "url", "content"}
        assert answer["sources"] == ["127.0.0.1"]
        assert count_tokens(json.dumps(answer, ensure_ascii=False)) <= 1024


@pytest.mark.parametrize("budget", [200, 700, 3000])
def test_the_whole_result_fits_the_budget(ddgs_site, allow_local, budget):
    answer = _search(allow_local, budget=budget).search(FACTS[3].keywords)
    assert answer["output"] and count_tokens(json.dumps(answer, ensure_ascii=False)) <= budget


def test_json_escapes_cannot_push_the_result_over_the_budget(allow_local):
    """Many short paragraphs: each newline costs tokens once escaped in JSON, which the chunk
    estimate does not see; the exact check on the rendered JSON drops chunks until it fits."""
    text = "\n\n".join(f"L{i}." for i in range(2000))  # 2 tokens a paragraph, 4 more for its escaped break
    rows = [{"title": "Ledgers", "url": "https://archive.example.org/", "content": text}]
    answer = _search(allow_local, budget=1000, provider=callback_provider(lambda q: rows)).search("L7")
    assert answer["output"] and count_tokens(json.dumps(answer, ensure_ascii=False)) <= 1000


def test_mixed_results_report_each_source_status_and_keep_the_good_pages(ddgs_site, allow_local):
    start = time.monotonic()
    answer = _search(allow_local).search("mixedbag heritage")
    assert time.monotonic() - start < allow_local.page_timeout_secs + 1.0  # /slow sleeps 60 s
    statuses = {u["url"].rsplit("/", 1)[-1]: u["status"] for u in answer["unavailable"]}
    assert statuses == {"slow": "timeout", "forbidden": "http_error", "js-shell": "empty", "ratelimit": "rate_limited"}
    js = next(u for u in answer["unavailable"] if u["url"].endswith("js-shell"))
    assert "JavaScript" in js["detail"]
    assert answer["status"] == "ok" and {o["url"].rsplit("/", 1)[-1] for o in answer["output"]} == \
        {FACTS[1].slug, FACTS[2].slug}


def test_a_rate_limited_search_is_never_reported_as_no_results(ddgs_site, allow_local):
    with pytest.raises(SearchRateLimited, match="not an empty result"):
        make_ddgs_provider(allow_local)("ratelimitme please", ProviderOptions())
    answer = _search(allow_local).search("ratelimitme please")
    assert answer["status"] == "rate_limited" and answer["output"] == []
    assert "refused, not empty" in answer["error"]


def test_rate_limit_detection_sabotaged_reads_as_no_results(ddgs_site, allow_local, monkeypatch):
    """Sabotage: without the refusal recorder, ddgs's own answer to the 202 captcha page is
    "No results found." (the complaint this plugin fixes)."""
    import agentkit.plugins.web_search.providers as providers

    monkeypatch.setattr(providers._RecordingClient, "request", lambda self, *a, **k: self._inner.request(*a, **k))
    answer = _search(allow_local).search("ratelimitme please")
    assert answer["status"] == "no_results"


def test_an_unreachable_search_engine_is_an_error_not_a_crash(allow_local, monkeypatch, caplog):
    from ddgs.engines.duckduckgo import Duckduckgo

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setattr(Duckduckgo, "search_url", f"http://127.0.0.1:{port}/html/")
    with caplog.at_level(logging.ERROR):
        answer = _search(allow_local).search("anything at all")
    assert answer["status"] == "error" and answer["output"] == [] and "search failed" in answer["error"]
    assert "provider failed" in caplog.text


def test_callback_results_are_used_and_callback_errors_give_an_empty_result(allow_local, caplog):
    rows = [{"title": "Local note", "description": "a file", "url": "notes/a.txt",
             "content": "The Kettleby archive keeps its ledgers in a cellar."}]
    answer = _search(allow_local, provider=callback_provider(lambda q: rows)).search("where are the ledgers")
    assert answer["status"] == "ok" and answer["output"][0]["url"] == "notes/a.txt"
    assert "cellar" in answer["output"][0]["content"] and answer["sources"] == ["notes/a.txt"]

    def broken(query):
        raise RuntimeError("index offline")

    with caplog.at_level(logging.ERROR):
        answer = _search(allow_local, provider=callback_provider(broken)).search("anything")
    assert answer["output"] == [] and answer["status"] == "error" and "index offline" in caplog.text
    bad = _search(allow_local, provider=callback_provider(lambda q: "not a list")).search("x")
    assert bad["status"] == "error" and "list of dicts" in bad["error"]


def test_domain_filters_match_subdomains():
    f = {"allowed_domains": ["example.com"], "blocked_domains": ["bad.example.com"]}
    assert domain_allowed("https://www.example.com/a", f) and domain_allowed("https://docs.example.com/", f)
    assert not domain_allowed("https://bad.example.com/x", f) and not domain_allowed("https://other.org/", f)
    assert not domain_allowed("https://notexample.com/", f)
    assert domain_allowed("https://any.org/", None)


def test_blocked_domains_drop_results_before_fetching(ddgs_site, allow_local):
    answer = _search(allow_local, filters={"blocked_domains": ["127.0.0.1"]}).search(FACTS[0].question)
    assert answer["output"] == [] and answer["status"] == "no_results"


def test_a_url_query_is_fetched_directly(ddgs_site, allow_local):
    url = ddgs_site.url(f"/page/{FACTS[7].slug}")
    answer = _search(allow_local).search(f'"{url}"')
    assert answer["output"][0]["url"] == url and FACTS[7].title in answer["output"][0]["title"]


def test_extract_refuses_loopback_unless_allowed(site):
    url = site.url(f"/page/{FACTS[4].slug}")
    refused = _search(WebSearchSettings(page_timeout_secs=2.0)).extract(url)
    assert refused["status"] == "blocked" and "SSRF" in refused["output"][0]["detail"]
    allowed = _search(WebSearchSettings(allow_private_addresses=True, page_timeout_secs=2.0)).extract(url)
    assert allowed["status"] == "ok" and FACTS[4].answer in allowed["output"][0]["content"]
    assert "Accept all cookies" not in allowed["output"][0]["content"]


def test_extract_caps_a_long_page_to_the_budget_and_says_so(site, allow_local):
    answer = _search(allow_local, budget=300).extract(site.url(f"/page/{FACTS[4].slug}"))
    assert "truncated" in answer and count_tokens(json.dumps(answer)) <= 300
    assert _search(allow_local).extract("not a url")["status"] == "error"
