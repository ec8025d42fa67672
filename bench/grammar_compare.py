"""Grammar cost through the public API, agentkit against mistral.rs, on SmolLM2-135M-Instruct.

Both engines get the same chat request (greedy, `max_tokens` 128) without a grammar and with a
`json_schema` grammar whose one string field (minLength 1000) keeps the model writing to `max_tokens`; the decode
rate comes from each engine's own `Usage` (completion tokens / completion time). Each engine runs
in its own process, one after the other (`--engine both`), median of `--reps`.
For agentkit's engine-level breakdown (mask time, how much is hidden) see bench/grammar.py.

Run: .venv/bin/python bench/grammar_compare.py [--reps 3]   (needs `pip install mistralrs`)
Writes bench/results/grammar_compare.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCHEMA = {"type": "object", "properties": {"story": {"type": "string", "minLength": 1000}}, "required": ["story"]}
PROMPT = "Write a long story about a lighthouse keeper, as JSON with one field, story."


def worker(engine: str, reps: int) -> dict:
    from agentkit.testing import smollm2_gguf

    mod = __import__("mistralrs" if engine == "mistralrs" else "agentkit")
    d, f = smollm2_gguf()
    runner = mod.Runner(mod.Which.GGUF(quantized_model_id=d, quantized_filename=f, tok_model_id=None))
    out: dict[str, list] = {}
    for case, grammar in (("unconstrained", None), ("json_schema", json.dumps(SCHEMA))):
        for rep in range(reps + 1):  # the first is a warm-up
            resp = runner.send_chat_completion_request(mod.ChatCompletionRequest(
                model="default", messages=[{"role": "user", "content": PROMPT}], max_tokens=128, temperature=0.0,
                grammar=grammar, grammar_type="json_schema" if grammar else None))
            u = resp.usage
            if rep:
                out.setdefault(case, []).append({
                    "tokens": u.completion_tokens, "seconds": u.total_completion_time_sec,
                    "ms_per_token": 1000 * u.total_completion_time_sec / max(u.completion_tokens - 1, 1),
                    "in_grammar": _in_grammar(resp.choices[0].message.content) if grammar else None})
    if hasattr(runner, "shutdown"):
        runner.shutdown()
    return out


def _in_grammar(text: str) -> bool:
    """The output is a prefix of a schema-valid document (it is cut by max_tokens inside the string)."""
    return re.match(r'\s*\{\s*"story"\s*:\s*"(?:[^"\\]|\\.)*$', text) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["agentkit", "mistralrs", "both"], default="both")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "grammar_compare.json"))
    args = ap.parse_args()
    if args.engine != "both":
        print(json.dumps(worker(args.engine, args.reps)))
        return
    results = {}
    for engine in ("agentkit", "mistralrs"):
        proc = subprocess.run([sys.executable, __file__, "--engine", engine, "--reps", str(args.reps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            results[engine] = {"error": proc.stderr[-1500:]}
            continue
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\n| engine | unconstrained ms/token | json_schema ms/token | overhead | tokens (json) | output follows the grammar |")
    print("|---|---|---|---|---|---|")
    for engine, r in results.items():
        if "error" in r:
            print(f"| {engine} | error: {r['error'].strip().splitlines()[-1][:80]} | | | | |")
            continue
        free = statistics.median(x["ms_per_token"] for x in r["unconstrained"])
        con = statistics.median(x["ms_per_token"] for x in r["json_schema"])
        toks = statistics.median(x["tokens"] for x in r["json_schema"])
        valid = sum(bool(x["in_grammar"]) for x in r["json_schema"])
        print(f"| {engine} | {free:.2f} | {con:.2f} | {con - free:+.2f} ms ({100 * (con / free - 1):+.0f}%) | "
              f"{toks:g} | {valid}/{len(r['json_schema'])} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"schema": SCHEMA, "prompt": PROMPT, "results": results}, indent=1))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
