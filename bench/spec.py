"""Speculative decoding on agent workloads: agentkit with speculation vs without, and mistral.rs.

Usage: python bench/spec.py [--reps 3] [--max-tokens 160] [--engines spec,plain,mistralrs]

Three long-lived workers on the SmolLM2 GGUF (bench/workers.py, 2 torch threads, prefix cache off):
agentkit as shipped (n-gram speculation on), agentkit with the speculative plugin disabled
(AGENTKIT_DISABLE_PLUGINS=speculative) and mistral.rs 0.9.5. Every case (bench/spec_prompts.py:
echo-and-patch a JSON tool result, rename a variable in 40 lines of code, quote a passage from a
tool output, and the non-repetitive sea poem) is sent greedily to each worker in turn, the order
rotating every repetition. Reported per case: decode tok/s (median, range), the speculative ÷
plain ratio (median of per-repetition ratios), mean acceptance length (tokens per verify step),
whether speculative and plain texts are identical, and mistral.rs for reference. Foreign CPU
time around each sample is recorded (the machine is shared); samples are flagged, not retried.
Writes bench/results/spec.{json,md,png}.

Non-goals: sampling, batches (see bench/compare.py), draft models.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from spec_prompts import CASES, COPY_CASES  # noqa: E402
from worker_client import Worker, own_cpu_s, process_cpu_s, system_busy_s  # noqa: E402

LABEL = {"spec": "agentkit (speculation on)", "plain": "agentkit (speculation off)", "mistralrs": "mistral.rs 0.9.5"}


def start(name: str, threads: int) -> Worker:
    engine = "mistralrs" if name == "mistralrs" else "agentkit"
    saved = os.environ.get("AGENTKIT_DISABLE_PLUGINS")
    if name == "plain":
        os.environ["AGENTKIT_DISABLE_PLUGINS"] = "speculative"
    try:
        w = Worker(name, engine, ["--threads", str(threads), "--prefix-cache", "0", "--max-seqs", "8"],
                   tempfile.mkdtemp(prefix="spec-bench-"), timeout_s=900)
    finally:
        if saved is None:
            os.environ.pop("AGENTKIT_DISABLE_PLUGINS", None)
        else:
            os.environ["AGENTKIT_DISABLE_PLUGINS"] = saved
    w.call({"cmd": "stream", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "ignore_eos": True}, 900)
    return w


def measure(w: Worker, case: str, max_tokens: int) -> dict[str, Any]:
    s0, w0, d0, t0 = system_busy_s(), process_cpu_s(w.pid), own_cpu_s(), time.perf_counter()
    res = w.call({"cmd": "stream", "messages": CASES[case], "max_tokens": max_tokens, "ignore_eos": False}, 1800)
    wall = time.perf_counter() - t0
    res["foreign_cpu_s"] = (system_busy_s() - s0) - (process_cpu_s(w.pid) - w0) - (own_cpu_s() - d0)
    res["contaminated"] = res["foreign_cpu_s"] > 0.1 * wall + 0.2
    return res


def med(xs: list[float]) -> dict[str, float] | None:
    xs = [x for x in xs if x is not None]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None


def summarize(samples: dict[str, dict[str, list[dict[str, Any]]]], engines: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in CASES:
        row: dict[str, Any] = {}
        for e in engines:
            row[e] = med([s.get("decode_tok_s") for s in samples[e][case]])
            row[f"n_{e}"] = len(samples[e][case])
        if "spec" in engines and "plain" in engines:
            pairs = zip(samples["spec"][case], samples["plain"][case])  # same repetition (a cut run: fewer)
            row["spec_over_plain"] = med([a["decode_tok_s"] / b["decode_tok_s"] for a, b in pairs
                                          if a.get("decode_tok_s") and b.get("decode_tok_s")])
            row["same_text"] = all(a["text"] == b["text"] for a, b in zip(samples["spec"][case], samples["plain"][case]))
            specs = [s.get("speculative") for s in samples["spec"][case]]
            row["mean_acceptance_length"] = med([s["mean_acceptance_length"] for s in specs if s])
            row["drafted_accepted"] = [(s["drafted_tokens"], s["accepted_tokens"]) if s else (0, 0) for s in specs]
            row["completion_tokens"] = [s.get("completion_tokens") for s in samples["spec"][case]]
        if "spec" in engines and "mistralrs" in engines:
            pairs = zip(samples["spec"][case], samples["mistralrs"][case])
            row["spec_over_mistralrs"] = med([a["decode_tok_s"] / b["decode_tok_s"] for a, b in pairs
                                              if a.get("decode_tok_s") and b.get("decode_tok_s")])
        row["contaminated_samples"] = sum(s.get("contaminated", False) for e in engines for s in samples[e][case])
        out[case] = row
    return out


def fmt(entry: dict[str, float] | None, digits: int = 1, suffix: str = "") -> str:
    if not entry:
        return "–"
    m, lo, hi = entry["median"], entry["min"], entry["max"]
    return f"{m:.{digits}f}{suffix} ({lo:.{digits}f}–{hi:.{digits}f})"


def table(summary: dict[str, Any], engines: list[str], reps: int) -> str:
    head = ["case", *[LABEL[e] + " tok/s" for e in engines], "on ÷ off", "mean acceptance length",
            "same text on/off", "on ÷ mistral.rs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, row in summary.items():
        kind = "copy" if case in COPY_CASES else "free text"
        cells = [f"{case} ({kind})", *[fmt(row.get(e)) + f" n={row.get(f'n_{e}', 0)}" for e in engines], fmt(row.get("spec_over_plain"), 2, "×"),
                 fmt(row.get("mean_acceptance_length"), 2), str(row.get("same_text", "–")),
                 fmt(row.get("spec_over_mistralrs"), 2, "×")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"- Decode tok/s = (completion tokens − 1) / (last − first streamed token), greedy, up to the "
                 f"token limit or EOS; medians over up to {reps} interleaved repetitions (range; a cell with one "
                 "sample shows it twice); ratios are medians of per-repetition ratios. Mean acceptance length = "
                 "tokens emitted per verify step.")
    return "\n".join(lines)


def chart(summary: dict[str, Any], engines: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"spec": "#1f77b4", "plain": "#9ecae1", "mistralrs": "#2ca02c"}
    cases = list(summary)
    width = 0.8 / len(engines)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for j, e in enumerate(engines):
        ys = [(summary[c].get(e) or {}).get("median", 0.0) for c in cases]
        xs = [i + (j - (len(engines) - 1) / 2) * width for i in range(len(cases))]
        bars = ax.bar(xs, ys, width, label=LABEL[e], color=colors[e])
        ax.bar_label(bars, labels=[f"{y:.0f}" for y in ys], fontsize=7, padding=2)
    labels = [f"{c}\non÷off {(summary[c].get('spec_over_plain') or {}).get('median', 0):.2f}×" for c in cases]
    ax.set_xticks(range(len(cases)), labels, fontsize=8)
    ax.set_ylabel("decode tok/s (higher is better)")
    ax.set_title("SmolLM2-135M Q4_1, 2 threads: speculative decoding on agent prompts")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", default="spec,plain,mistralrs")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "spec"))
    ap.add_argument("--cases", default=",".join(CASES), help="cases in the order to run them")
    ap.add_argument("--summarize", action="store_true",
                    help="only rebuild the table, chart and JSON from the samples in OUT.jsonl (a cut-short run)")
    ap.add_argument("--also", default="", help="with --summarize: more .jsonl sample files to merge")
    args = ap.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    bad = [e for e in engines if e not in LABEL]
    if bad:
        raise SystemExit(f"unknown engine(s) {bad}: choose from {sorted(LABEL)}")
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {e: {c: [] for c in CASES} for e in engines}
    cases = [c for c in args.cases.split(",") if c]
    if [c for c in cases if c not in CASES]:
        raise SystemExit(f"unknown case(s) in {cases}: choose from {list(CASES)}")
    if args.summarize:
        for path in [args.out + ".jsonl", *[p for p in args.also.split(",") if p]]:
            with open(path) as f:
                for line in f:
                    rec = json.loads(line)
                    if rec["engine"] in samples:
                        samples[rec["engine"]][rec["case"]].append(rec["result"])
        args.reps = max(len(samples[e][c]) for e in engines for c in CASES)  # a cut-short run: what exists
        return write(args, engines, samples, {})
    workers = {e: start(e, args.threads) for e in engines}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    log = open(args.out + ".jsonl", "w")  # noqa: SIM115 - every sample as it comes (a cut-short run keeps them)
    try:
        for rep in range(args.reps):
            order = engines[rep % len(engines):] + engines[: rep % len(engines)]
            for case in cases:
                for e in order:
                    res = measure(workers[e], case, args.max_tokens)
                    samples[e][case].append(res)
                    log.write(json.dumps({"rep": rep, "case": case, "engine": e, "result": res}) + "\n")
                    log.flush()
                    print(f"rep {rep} {case:16s} {e:9s} {res.get('decode_tok_s') or 0:7.1f} tok/s "
                          f"{res.get('completion_tokens')} tokens foreign {res['foreign_cpu_s']:.1f} s"
                          + (f" acc.len {res['speculative']['mean_acceptance_length']:.2f}"
                             if res.get("speculative") else ""), flush=True)
    finally:
        log.close()
        info = {e: w.ready.get("info") for e, w in workers.items()}
        for w in workers.values():
            w.close()
    return write(args, engines, samples, info)


def write(args: argparse.Namespace, engines: list[str], samples: dict[str, Any], info: dict[str, Any]) -> int:
    summary = summarize(samples, engines)
    md = table(summary, engines, args.reps)
    print(md)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"params": vars(args), "summary": summary, "samples": samples, "workers": info,
                   "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    chart(summary, engines, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
