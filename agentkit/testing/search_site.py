"""A local web for web-search tests and the search bench: 40 generated pages with planted facts.

Scope: `SearchSite` (a `ThreadingHTTPServer` on 127.0.0.1) serving
- `/page/<slug>`: 40 HTML pages about fictional places (8 kinds x 5), each with realistic
  boilerplate (header and navigation, cookie banner, breadcrumb, "related articles" sidebar,
  newsletter box, footer) around 12 paragraphs, one of which holds a planted fact; `FACTS` lists
  (slug, question, keywords, reverse `lookup`, answer) with every answer string unique to its page's body, and
  `MAIN_PARAGRAPHS` each page's true main text (title, then paragraphs). A third of the
  pages use `<article>`, a third only class names, a third neither (plain `div`s), so
  extraction cannot rely on semantic tags;
- `/slow` (answers after `slow_secs`), `/trickle` (sends its body 50 bytes every 0.2 s),
  `/forbidden` (403), `/js-shell` (a JavaScript-only app shell), `/ratelimit` (DuckDuckGo's 202 "anomaly" captcha page), `/plain.txt`;
- `/html/`: a DuckDuckGo-HTML-shaped results page (POST, as ddgs sends) listing the 10 pages
  whose titles and keywords best match the query. A query containing "mixedbag" lists the special
  pages with two good ones; a query containing "ratelimitme" gets the 202 captcha page itself.
`point_ddgs(site)` is a context manager aiming ddgs's DuckDuckgo engine at the site
(ecosystem.md §2.3). `BOILERPLATE_LINES` are the boilerplate texts, for measuring leakage;
`approx_tokens` is a stand-in tokenizer.

Non-goals: realism beyond what extraction and ranking need; anything used at runtime.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BOILERPLATE_LINES", "FACTS", "MAIN_PARAGRAPHS", "PAGES", "Fact", "SearchSite", "approx_tokens",
           "point_ddgs"]

KINDS = ["Bridge", "Lighthouse", "Observatory", "Library", "Canal", "Station", "Garden", "Clock Tower"]
PLACES = ["Varnholt", "Quillmere", "Brannock", "Tessaly", "Morwick", "Caldrith", "Eskvale", "Hollinbrae",
          "Pendrath", "Saltmere", "Orrinford", "Dunmarrow", "Feywick", "Gallowmere", "Harrowgate", "Ilverton",
          "Jessamy", "Kettleby", "Lindqvist", "Marrowdale", "Netherby", "Oakhaven", "Pellinor", "Quenby",
          "Rookhollow", "Sablewood", "Thornbury", "Ulverstane", "Vexley", "Wendlebury", "Yarrowmere", "Zennor",
          "Ashcombe", "Bramblecote", "Cinderford", "Dovecote", "Elmridge", "Foxmoor", "Glimmerby", "Hawksmere"]
FIRST = ["Mara", "Oskar", "Ilse", "Tobias", "Greta", "Anselm", "Wilhelmina", "Corin", "Elspeth", "Bastian",
         "Runa", "Lorcan", "Petra", "Ambrose", "Sigrid", "Florian", "Hedda", "Casimir", "Ottilie", "Emrys"]
LAST = ["Quist", "Vintergaard", "Harrowby", "Lindenfeld", "Okonkwo", "Brandvold", "Castellane", "Mørk",
        "Fairweather", "Szabo", "Pemberton-Ash", "Kowalczyk", "Duplessis", "Arkwright", "Halvorsen", "Tregarthen",
        "Nakashima", "Oyelaran", "Ferreira-Lund", "Blackwood"]
STONES = ["Hallstow granite", "Pennick sandstone", "Marl Cove limestone", "Treveth slate", "Oakby basalt",
          "Corrie Ash marble", "Dunstane gritstone", "Wyre Hill flint"]

# (fact sentence, question, value kind, the keywords an agent would search for with the name, the
# reverse lookup from the value): {k} the kind of place (the sentence does not repeat its full
# name, as later sentences of an article rarely do), {e} the place's full name, {v} the planted value
ATTRIBUTES = [
    ("The plans were drawn up by the engineer {v}, who later wrote a memoir about the work.",
     "Who designed the {e}?", "person", "designer",
     "Which {k} was designed by {v}?"),
    ("Builders finally finished the {k} in {v}, two years behind schedule.",
     "In what year was construction of the {e} completed?", "year", "completion year",
     "Which {k} was completed in {v}?"),
    ("When the accounts were settled the {k} had cost {v} in total.",
     "How much money did it take to build the {e}?", "money", "construction cost",
     "Which {k} cost {v} to build?"),
    ("The outer walls of the {k} are faced with {v} brought in by barge.",
     "What kind of stone covers the walls of the {e}?", "stone", "wall stone",
     "Which {k} is built of {v}?"),
    ("Attendance records show that roughly {v} people come to the {k} every year.",
     "How many visitors does the {e} receive annually?", "count", "annual visitors",
     "Which {k} gets about {v} visitors a year?"),
    ("The money for the {k} was put up by the wool merchant {v}.",
     "Who paid for the {e} to be built?", "person", "funded by",
     "Which {k} was paid for by {v}?"),
    ("Engineers measured the {k} at {v} from end to end in the 1990 survey.",
     "How long is the {e}?", "length", "length",
     "Which {k} is {v} long?"),
    ("The {k} was shut to the public for a major restoration in {v}.",
     "In which year did the {e} close for restoration work?", "year", "restoration closure year",
     "Which {k} closed for restoration in {v}?"),
]

# sentence pools: {e} the place's full name, {p} the town, {k} the kind (lower case), {w} a minor figure
SENTENCES = [
    "The {e} stands on the edge of {p}, a market town whose fortunes rose and fell with the river trade.",
    "Local historians describe the {k} as the pride of the district.",
    "Postcards of the {k} were sold in every shop along the high street for more than a century.",
    "Visitors usually arrive by the coastal road, which gives a long view of the {k} across the water meadows.",
    "In winter the approach can flood, and the parish council has argued for decades about raising the causeway.",
    "The {e} appears in several paintings by regional artists.",
    "A small exhibition in the town hall shows sketches of the {k} made during its early years.",
    "Guides point out details that are easy to miss, such as the carved initials above the doorway.",
    "During the war years the {k} served as a lookout post.",
    "Older residents still remember the blackout curtains and the soldiers who slept in the storerooms.",
    "Today the {e} is looked after by a volunteer trust that organises open days and lantern walks.",
    "The trust relies on donations and a modest county grant to keep the building in good repair.",
    "Photographers favour the early morning light, when mist lifts from the river.",
    "A footpath circles the site, with benches placed at the best viewpoints.",
    "The surrounding streets of {p} keep much of their old character, with narrow lanes and slate roofs.",
    "Cafes near the {k} stay open late in summer, when the evening concerts draw crowds.",
    "The local poet {w} wrote a long ballad about a storm that nearly destroyed the {k}.",
    "School parties come every spring to sketch the {k} and hear stories about smugglers.",
    "A modern visitor centre beside the {k} was designed by a firm from the city and opened in the 2000s.",
    "The small chapel next to the {k} was paid for by public subscription after a fire.",
    "Repairs to the roof in the 1970s cost far more than the council had budgeted.",
    "The gift shop sells prints, tea towels and a history of {p} written by {w}.",
    "Some of the timber in the {k} was reused from ships broken up in the harbour.",
    "The walking trail that starts at the {k} is popular with birdwatchers in autumn.",
    "Records of the early years of the {k} were kept by the parish clerk {w}.",
    "Every midsummer a fair is held on the green in front of the {e}.",
    "The {k} was floodlit for the first time to mark a royal visit in the 1950s.",
    "Several films have used the {k} as a backdrop, most of them forgettable period dramas.",
    "Stonemasons from across the county worked on the {k} during the busy seasons.",
    "Nobody is quite sure how many people lived in {p} when work on the {k} began.",
    "A scale model of the {e} can be seen in the museum on Fore Street.",
    "The old toll keeper's cottage near the {k} is now a holiday let.",
    "Storm damage in the great gale left a long crack that is still visible on the north side of the {k}.",
    "A brass band plays beside the {k} on bank holidays, weather permitting.",
    "The first guidebook to {p} devoted three whole pages to the {k}.",
    "Ivy once covered most of the {k} until volunteers cut it back.",
    "Foxes and barn owls nest in the quiet corners around the {k}.",
    "The route from the railway halt to the {k} is signposted with cast-iron markers.",
    "A time capsule was buried under the forecourt of the {e} in the 1980s.",
    "Artists in residence have painted murals on the hoardings near the {k}.",
    "The {k} is lit in different colours for local charity appeals.",
    "In dry summers the old foundations of a mill appear in the field beside the {k}.",
    "The parish magazine runs a monthly column of memories about the {k}.",
    "Local legend says a tunnel links the {k} to the cellars of the coaching inn.",
    "A weather vane shaped like a herring sits on the highest point of the {k}.",
    "The {k} featured on a set of stamps issued to celebrate regional landmarks.",
    "Tour buses stop at the {k} for twenty minutes, which most visitors say is too short.",
    "The town band of {p} was founded by workers who had laboured on the {k}.",
    "Maps from the eighteenth century show only a ferry crossing where the {k} now stands.",
    "The lawn in front of the {k} hosts an open-air cinema in August.",
    "A bronze statue of a fisherman gazes towards the {k} from the quay.",
    "Heritage inspectors list the {k} among the most important buildings in the county.",
]
MINOR = ["Jory Penhallow", "Agnes Trewin", "Matthias Colley", "Dorcas Veale", "Silas Annear", "Loveday Rowe",
         "Hamlyn Bice", "Tamsin Oates"]

NAV = ["Home", "News", "Travel", "History", "Architecture", "Events", "Shop", "About us", "Contact", "Log in"]
BOILERPLATE_LINES = [
    "We use cookies to improve your experience and to show you personalised adverts. Accept all cookies or "
    "manage your preferences.",
    "Sign up to our weekly newsletter for the best heritage stories, travel tips and exclusive offers.",
    "Copyright 2026 Heritage Places Online Ltd. All rights reserved. Privacy policy. Terms of use. Accessibility.",
    "Related articles", "Popular this week", "You are here", "Share this article on social media",
    "Advertisement: Book your coastal break today and save up to 30 percent on family rooms.",
] + NAV


@dataclass(frozen=True)
class Fact:
    """One page's planted fact: ask `question` (or search `keywords`), expect `answer` in the output.

    `lookup` goes the other way, from the value to the place ("Which bridge was designed by
    Oskar Quist?"): the exact names and numbers where word matching beats a small embedder.
    """

    slug: str
    title: str
    question: str
    answer: str
    keywords: str = ""
    lookup: str = ""


def _build() -> tuple[dict[str, str], list[Fact]]:
    rng = random.Random(20261130)
    people = [f"{f} {ln}" for f, ln in zip(FIRST * 2, LAST + LAST[::-1])]
    rng.shuffle(people)
    years = rng.sample(range(1702, 1949), 40)
    pages: dict[str, str] = {}
    facts: list[Fact] = []
    titles = []
    for i, place in enumerate(PLACES):
        kind = KINDS[i % len(KINDS)]
        titles.append((place.lower() + "-" + kind.lower().replace(" ", "-"), f"{place} {kind}", place, kind))
    for i, (slug, title, place, kind) in enumerate(titles):
        attr, question, vkind, keywords, lookup = ATTRIBUTES[(i // len(KINDS) + i) % len(ATTRIBUTES)]
        if vkind == "person":
            value = people.pop()
        elif vkind == "year":
            value = str(years[i])
        elif vkind == "money":
            value = f"£{rng.randint(11, 97)},{rng.randint(100, 999)}"
        elif vkind == "stone":
            value = f"{rng.choice(['grey', 'pale', 'red', 'honey-coloured'])} {STONES[i % 8]}"
        elif vkind == "count":
            value = f"{rng.randint(12, 480)},{rng.randint(100, 999)}"
        else:
            value = f"{rng.randint(41, 899)}.{rng.randint(1, 9)} metres"
        e = title
        fmt = {"e": e, "p": place, "k": kind.lower()}
        pool = rng.sample(SENTENCES, 48)
        paras = [" ".join(t.format(w=rng.choice(MINOR), **fmt) for t in pool[j:j + 4]) for j in range(0, 48, 4)]
        at = rng.randrange(0, len(paras))
        host = paras[at].split(". ")
        host.insert(rng.randrange(0, len(host) + 1), attr.format(k=kind.lower(), v=value).rstrip("."))
        paras[at] = ". ".join(host).replace("..", ".")
        MAIN_PARAGRAPHS[slug] = [title, *paras]
        related = rng.sample([t for t in titles if t[0] != slug], 5)
        facts.append(Fact(slug, title, question.format(e=e), value, f"{title} {keywords}",
                          lookup.format(k=kind.lower(), v=value)))
        pages[slug] = _page(i, title, kind, paras, related)
    return pages, facts


def _page(i: int, title: str, kind: str, paras: list[str], related: list[tuple[str, str, str, str]]) -> str:
    esc = html.escape
    nav = "".join(f'<li><a href="/{n.lower().replace(" ", "-")}">{n}</a></li>' for n in NAV)
    rel = "".join(f'<li><a href="/page/{s}">{esc(t)}</a><span>Discover the story of the {esc(t)}.</span></li>'
                  for s, t, _, _ in related)
    body = "".join(f"<p>{esc(p)}</p>" for p in paras)
    b = BOILERPLATE_LINES
    style = i % 3
    if style == 0:  # semantic HTML5
        header = f'<header><div class="logo">Heritage Places</div><nav><ul>{nav}</ul></nav></header>'
        main = f"<main><article><h1>{esc(title)}</h1>{body}</article></main>"
        side = f'<aside><h3>{b[3]}</h3><ul>{rel}</ul><p>{b[7]}</p></aside>'
        foot = f'<footer><p>{b[1]}</p><p>{b[2]}</p></footer>'
    elif style == 1:  # class names only
        header = f'<div id="masthead"><div class="logo">Heritage Places</div><ul class="menu">{nav}</ul></div>'
        main = f'<div class="post-content"><h1>{esc(title)}</h1>{body}</div>'
        side = f'<div class="sidebar"><h3>{b[4]}</h3><ul>{rel}</ul><div class="ad-slot">{b[7]}</div></div>'
        foot = f'<div class="site-footer"><div class="newsletter">{b[1]}</div><p>{b[2]}</p></div>'
    else:  # neither: plain divs, as many old sites are
        header = f'<div class="top"><b>Heritage Places</b><div>{" | ".join(f"<a href=/>{n}</a>" for n in NAV)}</div></div>'
        main = f'<div class="c1"><h1>{esc(title)}</h1>{body}</div>'
        side = f'<div class="c2"><h3>{b[3]}</h3><ul>{rel}</ul><p>{b[7]}</p></div>'
        foot = f'<div class="bottom"><p>{b[1]}</p><p>{b[2]}</p></div>'
    crumbs = f'<div class="breadcrumb">{b[5]}: <a href="/">Home</a> &gt; <a href="/t">{kind}s</a></div>'
    cookie = f'<div class="cookie-banner"><p>{b[0]}</p><button>Accept</button></div>'
    share = f'<div class="share-tools">{b[6]}</div>'
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)} | Heritage Places</title>"
            f"<script>window.dataLayer=[];</script></head><body>{cookie}{header}{crumbs}"
            f'<div class="layout">{main}{share}{side}</div>{foot}</body></html>')


MAIN_PARAGRAPHS: dict[str, list[str]] = {}
PAGES, FACTS = _build()

JS_SHELL = ("<!doctype html><html><head><title>App</title><script src='/static/app.js'></script></head>"
            "<body><div id='root'></div><script>window.__INITIAL_STATE__={};renderApp();</script></body></html>")
RATE_LIMIT_PAGE = ("<!doctype html><html><head><title>DuckDuckGo</title></head><body><div class='anomaly-modal'>"
                   "<p>Unfortunately, bots use DuckDuckGo too.</p><p>Please complete the following challenge to "
                   "confirm this search was made by a human.</p><div class='captcha'>Select all squares containing "
                   "a duck</div></div></body></html>")
PLAIN_TEXT = "Plain text document.\n\nThe Kettleby archive keeps its ledgers in a cellar.\n"


def _ddg_results(items: list[tuple[str, str, str]]) -> str:
    return "".join(
        '<div class="result results_links web-result"><div class="links_main links_deep result__body">'
        f'<h2 class="result__title"><a class="result__a" href="{html.escape(u)}">{html.escape(t)}</a></h2>'
        f'<a class="result__snippet" href="{html.escape(u)}">{html.escape(s)}</a></div></div>' for u, t, s in items)


class SearchSite:
    """The fixture web server; use as a context manager. `url(path)` is an absolute URL on it."""

    def __init__(self, slow_secs: float = 60.0) -> None:
        self.slow_secs = slow_secs
        self.requests: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                query = urllib.parse.parse_qs(raw).get("q", [""])[0]
                site.requests.append(f"POST {self.path} {query}")
                if "ratelimitme" in query:
                    return self._send(202, RATE_LIMIT_PAGE)
                self._send(200, _ddg_results(site.results_for(query)))

            def do_GET(self) -> None:
                site.requests.append(f"GET {self.path}")
                path = self.path.split("?")[0]
                if path.startswith("/page/") and path[6:] in PAGES:
                    return self._send(200, PAGES[path[6:]])
                if path == "/slow":
                    time.sleep(site.slow_secs)
                    return self._send(200, PAGES[FACTS[0].slug])
                if path == "/trickle":  # headers at once, then 50 bytes every 0.2 s for a minute
                    self.send_response(200)
                    self.send_header("content-type", "text/html")
                    self.send_header("content-length", "15000")
                    self.end_headers()
                    try:
                        for _ in range(300):
                            self.wfile.write(b"<p>" + b"x" * 46 + b"</p>")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                if path == "/forbidden":
                    return self._send(403, "<html><body><h1>403 Forbidden</h1></body></html>")
                if path == "/js-shell":
                    return self._send(200, JS_SHELL)
                if path == "/ratelimit":
                    return self._send(202, RATE_LIMIT_PAGE)
                if path == "/plain.txt":
                    return self._send(200, PLAIN_TEXT, "text/plain; charset=utf-8")
                self._send(404, "<html><body>Not found</body></html>")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="search-site")

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return self.base + path

    def results_for(self, query: str, n: int = 10) -> list[tuple[str, str, str]]:
        """(url, title, snippet) of the pages a query finds: title word overlap, then page order."""
        if "mixedbag" in query:
            good = [FACTS[1], FACTS[2]]
            return ([(self.url(p), p.strip("/"), "special page") for p in
                     ("/slow", "/forbidden", "/js-shell", "/ratelimit")]
                    + [(self.url(f"/page/{f.slug}"), f.title, "A page about the " + f.title) for f in good])
        words = set(query.lower().replace("?", " ").split())

        def score(i: int) -> tuple[int, int]:
            title = FACTS[i].title.lower().split()
            return (-sum(w in words for w in title), i)
        order = sorted(range(len(FACTS)), key=score)[:n]
        return [(self.url(f"/page/{FACTS[i].slug}"), FACTS[i].title, f"All about the {FACTS[i].title}.")
                for i in order]

    def __enter__(self) -> SearchSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def approx_tokens(text: str) -> int:
    """A stand-in tokenizer for tests: words and punctuation marks count one token each."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@contextlib.contextmanager
def point_ddgs(site: SearchSite) -> Iterator[None]:
    """Aim ddgs's DuckDuckGo engine at `site` (its `/html/` endpoint) for the duration."""
    from ddgs.engines.duckduckgo import Duckduckgo

    old = Duckduckgo.search_url
    Duckduckgo.search_url = site.url("/html/")
    try:
        yield
    finally:
        Duckduckgo.search_url = old
