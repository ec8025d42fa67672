"""Main-content extraction: HTML -> the page's title and main text, without navigation or footers.

Scope: `extract(html)` -> `Extracted(title, text)`, a compact readability-style extractor on lxml:
1. drop non-content elements (scripts, styles, forms, `nav`, `aside`, page-level `header` and
   `footer`, ARIA navigation/banner/contentinfo/complementary roles) and blocks whose class or id
   reads like boilerplate (menu, sidebar, cookie, breadcrumb, share, related, ...) unless it also
   reads like content;
2. take `<article>` / `<main>` / `role=main` when it holds enough text, else the container that
   collects the most paragraph score (commas and length, discounted by link density), plus its
   siblings that score close to it;
3. render block elements as lines (headings, paragraphs, list items as "- ..."), dropping
   link-dense blocks (inline link lists).
`text_from_plain(text)` normalises a text/plain body the same way.

Non-goals: fetching, JavaScript rendering (a JS-only shell yields empty text and the fetcher's
caller reports it as `empty`), dates and authors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Extracted", "extract", "text_from_plain"]

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "canvas", "iframe", "form", "button",
              "input", "select", "textarea", "nav", "aside", "menu", "dialog", "head")
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alert", "menu",
               "menubar"}
_NEGATIVE = re.compile(r"nav|menu|footer|sidebar|side-bar|breadcrumb|cookie|consent|banner|share|social|related|"
                       r"comment|advert|\bads?\b|promo|subscribe|newsletter|masthead|skip|toolbar|popup|modal|"
                       r"widget|sponsor|pagination|pager|signup|login|copyright|legal", re.IGNORECASE)
_POSITIVE = re.compile(r"article|content|main|post|entry|story|body-?text|text-?body|blog", re.IGNORECASE)
_BLOCKS = {"p", "div", "section", "article", "main", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
           "blockquote", "td", "th", "tr", "dd", "dt", "figcaption", "table", "ul", "ol", "dl", "br", "hr"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_MIN_MAIN_CHARS = 200


@dataclass(frozen=True)
class Extracted:
    """The page's title and main text (paragraphs separated by blank lines)."""

    title: str
    text: str


def _attrs(el) -> str:  # noqa: ANN001 - lxml element
    return f"{el.get('class', '')} {el.get('id', '')}"


def _inside_content(el) -> bool:  # noqa: ANN001
    return any(a.tag in ("article", "main") or a.get("role") == "main" for a in el.iterancestors())


def _prune(root) -> None:  # noqa: ANN001
    doomed = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            doomed.append(el)  # comments, processing instructions
            continue
        tag = el.tag.lower()
        if tag in ("html", "body", "article", "main"):
            continue
        if tag in _DROP_TAGS or el.get("role", "").lower() in _DROP_ROLES or el.get("aria-hidden") == "true":
            doomed.append(el)
        elif tag in ("header", "footer") and not _inside_content(el):
            doomed.append(el)
        elif tag in ("div", "section", "ul", "ol", "p", "span", "table", "header", "footer"):
            attrs = _attrs(el)
            if _NEGATIVE.search(attrs) and not _POSITIVE.search(attrs):
                doomed.append(el)
    for el in doomed:
        if el.getparent() is not None:
            el.drop_tree()


def _text_len(el) -> int:  # noqa: ANN001
    return len(" ".join(el.text_content().split()))


def _link_density(el) -> float:  # noqa: ANN001
    total = _text_len(el)
    if not total:
        return 0.0
    return sum(_text_len(a) for a in el.iter("a")) / total


def _best_container(body):  # noqa: ANN001, ANN202
    for el in body.iter("article", "main"):
        if _text_len(el) >= _MIN_MAIN_CHARS:
            return [el]
    for el in body.iter():
        if isinstance(el.tag, str) and el.get("role") == "main" and _text_len(el) >= _MIN_MAIN_CHARS:
            return [el]
    scores: dict = {}
    for p in body.iter("p", "pre", "blockquote", "td", "li"):
        n = _text_len(p)
        if n < 25:
            continue
        score = 1 + p.text_content().count(",") + min(n / 100, 3)
        parent = p.getparent()
        if parent is None:
            continue
        scores[parent] = scores.get(parent, 0.0) + score
        grand = parent.getparent()
        if grand is not None:
            scores[grand] = scores.get(grand, 0.0) + score / 2
    if not scores:
        return [body]
    ranked = {el: s * (1 - _link_density(el)) for el, s in scores.items()}
    top = max(ranked, key=ranked.get)
    parent = top.getparent()
    if parent is None:
        return [top]
    keep = [sib for sib in parent if sib is top or ranked.get(sib, 0) >= 0.2 * ranked[top]]
    return keep


def _render(el, lines: list[str]) -> None:  # noqa: ANN001
    """Append the text of `el` as lines: one per block element, inline text joined."""
    buf: list[str] = []

    def flush(prefix: str = "") -> None:
        text = " ".join("".join(buf).split())
        buf.clear()
        if text:
            lines.append(prefix + text)

    def walk(node, prefix: str = "") -> None:  # noqa: ANN001
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        block = tag in _BLOCKS
        if block:
            flush()
            if tag in ("ul", "ol", "div", "section", "table") and _text_len(node) and _link_density(node) > 0.6:
                if node.tail:
                    buf.append(node.tail)
                return  # a list of links inside the content: navigation, not prose
        if node.text:
            buf.append(node.text)
        for child in node:
            walk(child, "- " if tag in ("ul", "ol") else prefix)
        if block:
            flush("- " if tag == "li" else ("# " if tag in _HEADINGS else ""))
        if node.tail:
            buf.append(node.tail)

    walk(el)
    flush()


def extract(html: str) -> Extracted:
    """Title and main text of an HTML document (empty text for a script-only shell)."""
    from lxml import html as lxml_html  # lazy: lxml comes with the search extra

    if not html.strip():
        return Extracted("", "")
    try:
        root = lxml_html.document_fromstring(html)
    except Exception:
        return Extracted("", "")
    title = ""
    og = root.xpath("//meta[@property='og:title']/@content")
    if og:
        title = " ".join(str(og[0]).split())
    if not title:
        t = root.find(".//title")
        title = " ".join((t.text_content() if t is not None else "").split())
    body = root.find("body")
    if body is None:
        body = root
    _prune(body)
    lines: list[str] = []
    for el in _best_container(body):
        _render(el, lines)
    if not title:
        h1 = body.find(".//h1")
        title = " ".join(h1.text_content().split()) if h1 is not None else ""
    return Extracted(title, "\n\n".join(lines))


def text_from_plain(text: str) -> str:
    """A text/plain body with runs of blank lines and spaces collapsed."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)
