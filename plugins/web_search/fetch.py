"""Fetch pages concurrently, each under its own wall-clock timeout, and classify how each went.

Scope: `fetch_pages(urls, settings)` -> one `Page` per URL, in order, each with a status:
`ok`, `timeout`, `http_error`, `rate_limited`, `blocked` (SSRF guard) or `error`. Every page
runs in its own daemon thread; the caller waits at most `page_timeout_secs` (plus a small grace)
for all of them together, so one slow page is marked `timeout` and never discards the others.
`looks_rate_limited(status, text)` is the captcha / "unusual traffic" detector, shared with the
ddgs provider.

Non-goals: turning HTML into text (`agentkit.plugins.web_search.extract`), search providers,
caching, robots.txt.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from agentkit.plugins.web_search.netguard import BlockedAddress, GuardedHTTPHandler, GuardedHTTPSHandler
from agentkit.plugins.web_search.types import SourceStatus, WebSearchSettings

__all__ = ["Page", "fetch_page", "fetch_pages", "looks_rate_limited"]

_GRACE_SECS = 0.25
_READ_CHUNK = 65536
_RATE_LIMIT_MARKERS = re.compile(
    r"captcha|unusual traffic|too many requests|rate.?limit|anomaly|are you a robot|automated (?:queries|requests)",
    re.IGNORECASE)
_CAPTCHA_MARKERS = re.compile(r"captcha|unusual traffic|are you a robot", re.IGNORECASE)  # for a 200 page


@dataclass
class Page:
    """One fetched URL: `body` is the decoded document (empty unless the status is ok)."""

    url: str
    status: SourceStatus
    body: str = ""
    content_type: str = ""
    detail: str = ""
    seconds: float = 0.0


def looks_rate_limited(http_status: int, text: str) -> bool:
    """True for 429, for a 202/403/503 page that reads like a captcha or rate limit, and for a
    tiny 200 page that reads like a captcha."""
    if http_status == 429:
        return True
    if http_status in (202, 403, 503):
        return bool(_RATE_LIMIT_MARKERS.search(text[:20000]))
    if http_status == 200 and len(text) < 4000:
        return bool(_CAPTCHA_MARKERS.search(text))
    return False


def _opener(settings: WebSearchSettings) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if not settings.allow_private_addresses:
        handlers += [GuardedHTTPHandler(), GuardedHTTPSHandler()]
    return urllib.request.build_opener(*handlers)


def _charset(headers: Message, raw: bytes) -> str:
    charset = headers.get_content_charset()
    if not charset:
        m = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_\-]+)", raw[:4096], re.IGNORECASE)
        charset = m.group(1).decode("ascii") if m else "utf-8"
    return charset


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def fetch_page(url: str, settings: WebSearchSettings, deadline: float | None = None) -> Page:
    """Fetch one URL (blocking); never raises. `deadline` is a `time.monotonic()` limit for the whole page."""
    start = time.monotonic()
    deadline = deadline if deadline is not None else start + settings.page_timeout_secs

    def page(status: SourceStatus, detail: str = "", body: str = "", ctype: str = "") -> Page:
        return Page(url, status, body, ctype, detail, round(time.monotonic() - start, 3))

    if not re.match(r"^https?://", url, re.IGNORECASE):
        return page("error", f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": settings.user_agent,
                                                   "Accept": "text/html,text/plain;q=0.9,*/*;q=0.5"})
    try:
        with _opener(settings).open(request, timeout=max(0.05, deadline - time.monotonic())) as resp:
            chunks, size = [], 0
            while size < settings.max_page_bytes:
                if time.monotonic() > deadline:
                    return page("timeout", f"page not fully received within {settings.page_timeout_secs:g} s")
                chunk = resp.read(min(_READ_CHUNK, settings.max_page_bytes - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            raw = b"".join(chunks)
            ctype = resp.headers.get_content_type()
            text = _decode(raw, _charset(resp.headers, raw))
            code = resp.status
    except urllib.error.HTTPError as exc:
        try:
            body = _decode(exc.read(65536), "utf-8")
        except Exception:
            body = ""
        if looks_rate_limited(exc.code, body):
            return page("rate_limited", f"HTTP {exc.code}: the site refused the request (rate limit or captcha)")
        return page("http_error", f"HTTP {exc.code} {exc.reason}")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, BlockedAddress):
            return page("blocked", str(reason))
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return page("timeout", f"no response within {settings.page_timeout_secs:g} s")
        return page("error", f"{type(reason).__name__}: {reason}")
    except BlockedAddress as exc:
        return page("blocked", str(exc))
    except TimeoutError:
        return page("timeout", f"no response within {settings.page_timeout_secs:g} s")
    except Exception as exc:  # a broken server must not break the search
        return page("error", f"{type(exc).__name__}: {exc}")
    if looks_rate_limited(code, text):
        return page("rate_limited", f"HTTP {code}: the site answered with a rate limit or captcha page")
    if code >= 300:
        return page("http_error", f"HTTP {code}")
    return page("ok", body=text, ctype=ctype)


def fetch_pages(urls: list[str], settings: WebSearchSettings) -> list[Page]:
    """Fetch every URL concurrently; returns within about `page_timeout_secs`, one `Page` per URL in order."""
    start = time.monotonic()
    deadline = start + settings.page_timeout_secs
    results: list[Page | None] = [None] * len(urls)

    def work(i: int, url: str) -> None:
        results[i] = fetch_page(url, settings, deadline)

    threads = [threading.Thread(target=work, args=(i, u), name=f"agentkit-fetch-{i}", daemon=True)
               for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + _GRACE_SECS - time.monotonic()))
    waited = round(time.monotonic() - start, 3)
    return [r if r is not None else
            Page(u, "timeout", detail=f"no response within {settings.page_timeout_secs:g} s", seconds=waited)
            for u, r in zip(urls, results)]
