"""Main-content extraction keeps the article and drops navigation, banners, sidebars and footers."""

from __future__ import annotations

import pytest

from agentkit.plugins.web_search.extract import extract, text_from_plain
from agentkit.testing.search_site import BOILERPLATE_LINES, FACTS, JS_SHELL, MAIN_PARAGRAPHS, PAGES, _page


@pytest.mark.parametrize("i", [0, 1, 2])  # <article> page, class-names-only page, plain-div page
def test_main_text_kept_and_boilerplate_dropped(i):
    fact = FACTS[i]
    ex = extract(PAGES[fact.slug])
    assert fact.title in ex.title
    for paragraph in MAIN_PARAGRAPHS[fact.slug][1:]:
        assert paragraph in ex.text
    assert fact.answer in ex.text
    leaked = [b for b in BOILERPLATE_LINES if len(b) > 20 and b in ex.text]
    assert not leaked
    for nav in ("Log in", "About us", "Contact"):
        assert nav not in ex.text


def test_every_fixture_page_extracts_without_boilerplate():
    for fact in FACTS:
        text = extract(PAGES[fact.slug]).text
        assert fact.answer in text
        assert not [b for b in BOILERPLATE_LINES if len(b) > 20 and b in text], fact.slug


def test_link_list_inside_the_content_is_dropped():
    page = _page(0, "X Bridge", "Bridge", ["A paragraph about the bridge, with enough words in it to count."],
                 [("a", "Alpha Bridge", "", ""), ("b", "Beta Lighthouse", "", "")])
    page = page.replace("</article>", '<ul><li><a href="/1">Link one</a></li><li><a href="/2">Link two</a></li>'
                                      '<li><a href="/3">Link three</a></li></ul></article>')
    text = extract(page).text
    assert "A paragraph about the bridge" in text and "Link one" not in text


def test_javascript_shell_has_no_text_and_empty_html_is_safe():
    assert extract(JS_SHELL).text == ""
    assert extract("") == extract("   ")
    assert extract("<html><body><p>Just one short line.</p></body></html>").text == "Just one short line."


def test_plain_text_is_normalised():
    assert text_from_plain("a  b\n\n\n\nc\n") == "a b\n\nc"
