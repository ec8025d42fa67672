"""Concurrent page fetching: per-page timeout, statuses, and the SSRF guard (with a sabotage check)."""

from __future__ import annotations

import socket
import time

import pytest

from agentkit.plugins.web_search.fetch import fetch_pages, looks_rate_limited
from agentkit.plugins.web_search.netguard import BlockedAddress, check_address
from agentkit.plugins.web_search.types import WebSearchSettings
from agentkit.testing.search_site import FACTS


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def test_one_slow_page_never_discards_the_others(site, allow_local):
    urls = [site.url("/slow")] + [site.url(f"/page/{f.slug}") for f in FACTS[:4]]
    start = time.monotonic()
    pages = fetch_pages(urls, allow_local)
    elapsed = time.monotonic() - start
    assert elapsed < allow_local.page_timeout_secs + 1.0  # the slow page sleeps 60 s
    assert pages[0].status == "timeout" and "1.5" in pages[0].detail
    assert [p.status for p in pages[1:]] == ["ok"] * 4
    assert all(f.answer in p.body for f, p in zip(FACTS[:4], pages[1:]))


def test_a_trickling_page_is_cut_at_the_deadline(site, allow_local):
    """A page that keeps sending slowly never trips the socket timeout; the wall-clock deadline cuts it."""
    start = time.monotonic()
    pages = fetch_pages([site.url("/trickle"), site.url(f"/page/{FACTS[5].slug}")], allow_local)
    assert time.monotonic() - start < allow_local.page_timeout_secs + 1.0
    assert [p.status for p in pages] == ["timeout", "ok"]


def test_statuses_of_forbidden_rate_limited_missing_and_refused_pages(site, allow_local):
    urls = [site.url("/forbidden"), site.url("/ratelimit"), site.url("/nope"), _closed_port_url(),
            "ftp://example.com/x", site.url("/plain.txt")]
    pages = fetch_pages(urls, allow_local)
    assert [p.status for p in pages] == ["http_error", "rate_limited", "http_error", "error", "error", "ok"]
    assert "403" in pages[0].detail and "404" in pages[2].detail
    assert "rate limit" in pages[1].detail
    assert pages[5].content_type == "text/plain"


def test_rate_limit_detector():
    assert looks_rate_limited(429, "")
    assert looks_rate_limited(202, "please solve the captcha")
    assert not looks_rate_limited(202, "accepted")
    assert not looks_rate_limited(200, "an article " * 1000 + " captcha")  # long normal page
    assert looks_rate_limited(200, "<p>Please solve the CAPTCHA</p>")
    assert not looks_rate_limited(200, "<p>The API has a rate limit of 10 requests.</p>")


def test_ssrf_guard_refuses_loopback_by_default(site):
    settings = WebSearchSettings(page_timeout_secs=2.0)
    assert not settings.allow_private_addresses
    slug = FACTS[0].slug
    before = sum(r.endswith(slug) for r in site.requests)
    [page] = fetch_pages([site.url(f"/page/{slug}")], settings)
    assert page.status == "blocked" and "SSRF" in page.detail and "allow_private_addresses" in page.detail
    assert sum(r.endswith(slug) for r in site.requests) == before  # refused before any request was sent


def test_ssrf_guard_sabotaged_lets_loopback_through(site, monkeypatch):
    """Sabotage: with the address check switched off, the same fetch reaches 127.0.0.1 (so the
    refusal above comes from the guard, not from something else)."""
    monkeypatch.setattr("agentkit.plugins.web_search.netguard.check_address", lambda ip: None)
    [page] = fetch_pages([site.url(f"/page/{FACTS[0].slug}")], WebSearchSettings(page_timeout_secs=2.0))
    assert page.status == "ok"


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "0.0.0.0",
                                "::1", "fe80::1", "fc00::5", "::ffff:127.0.0.1", "100.64.0.1", "224.0.0.1"])
def test_internal_addresses_are_refused(ip):
    with pytest.raises(BlockedAddress, match="SSRF"):
        check_address(ip)


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip):
    check_address(ip)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="page_timeout_secs"):
        WebSearchSettings(page_timeout_secs=0)
    with pytest.raises(ValueError, match="unknown web_search option"):
        WebSearchSettings.from_mapping({"alow_private_addresses": True})
    with pytest.raises(TypeError, match="allow_private_addresses"):
        WebSearchSettings(allow_private_addresses="yes")
