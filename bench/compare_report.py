"""The report of bench/compare.py: metrics, medians and ratios, the markdown tables, the chart, the environment.

Scope: `metric_list` (the table rows), `summarize` (medians, ranges, per-repetition ratios),
`markdown_table`, `contamination_table`, `draw_chart` and `environment`. Non-goals: running
anything (bench/compare_run.py).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from typing import Any

from compare_run import Bench, Params
from worker_client import HERE, Worker

LABEL = {"agentkit": "agentkit", "hf": "HF fp32", "mistralrs": "mistral.rs"}


# ---- summary --------------------------------------------------------------------------------------------------
@dataclass
class Metric:
    """One table row: where its per-repetition value comes from and how to show it."""

    key: str
    case: str
    label: str
    better: str  # "higher" | "lower" | "" (no ratio)
    fmt: str


def metric_list(p: Params, prompt_tokens: dict[str, int | None]) -> list[Metric]:
    def pt(key: str) -> str:
        n = prompt_tokens.get(key)
        return f"{n}" if n else "?"

    later = f"2–{p.agent_turns}"
    return [
        Metric("decode_tok_s", "decode", f"single-stream decode tok/s (p1, {p.decode_tokens} tokens)", "higher", ".1f"),
        Metric("ttft_short_s", "decode", f"TTFT, {pt('decode')}-token prompt (s)", "lower", ".3f"),
        Metric("e2e_tok_s", "decode", f"end-to-end tok/s (p1, {p.decode_tokens} tokens)", "higher", ".1f"),
        Metric("ttft_long_s", "long_prompt", f"TTFT, {pt('long_prompt')}-token prompt (s)", "lower", ".3f"),
        Metric("prefill_tok_s", "long_prompt", "prefill tok/s (prompt tokens / TTFT)", "higher", ".0f"),
        Metric("agg8_tok_s", "batch8", f"aggregate tok/s, 8 concurrent × {p.batch_tokens} tokens", "higher", ".1f"),
        Metric("failed8", "batch8", "failed requests, 8 concurrent (all reps)", "", ""),
        Metric("agg32_tok_s", "batch32", f"aggregate tok/s, 32 concurrent × {p.batch_tokens} tokens", "higher", ".1f"),
        Metric("failed32", "batch32", "failed requests, 32 concurrent (all reps)", "", ""),
        Metric("agent_turn1_ttft_s", "agent", f"agent: turn-1 TTFT, {pt('agent')}-token prompt (s)", "lower", ".3f"),
        Metric("agent_later_ttft_s", "agent", f"agent: median TTFT of turns {later} (s)", "lower", ".3f"),
        Metric("agent_later_over_turn1", "agent", f"agent: TTFT turns {later} / turn 1", "lower", ".2f"),
        Metric("agent_cached_tokens", "agent", f"agent: cached prompt tokens, turns {later} (median)", "", ".0f"),
        Metric("load_s", "load", "model load in the worker (s)", "lower", ".2f"),
        Metric("spawn_to_ready_s", "load", "worker spawn → ready (s)", "lower", ".2f"),
        Metric("cold_ttft_s", "load", "first request after load, TTFT (s)", "lower", ".3f"),
        Metric("peak_rss_mib", "load", "peak RSS of the worker, VmHWM (MiB)", "lower", ".0f"),
    ]


def extract(case: str, res: dict[str, Any]) -> dict[str, float | None]:
    """Per-sample metric values from a worker answer."""
    if case == "decode":
        return {"decode_tok_s": res.get("decode_tok_s"), "ttft_short_s": res.get("ttft_s"),
                "e2e_tok_s": res.get("e2e_tok_s")}
    if case == "long_prompt":
        ttft, n = res.get("ttft_s"), res.get("prompt_tokens")
        return {"ttft_long_s": ttft, "prefill_tok_s": n / ttft if ttft and n else None}
    if case in ("batch8", "batch32"):
        k = "8" if case == "batch8" else "32"
        return {f"agg{k}_tok_s": res.get("aggregate_tok_s"), f"failed{k}": res.get("failed")}
    if case == "agent":
        turns = res.get("turns") or []
        ttfts = [t.get("ttft_s") for t in turns]
        if not ttfts or any(t is None for t in ttfts):
            return {}
        later = statistics.median(ttfts[1:]) if len(ttfts) > 1 else None
        cached = [t.get("cached_tokens") for t in turns[1:] if t.get("cached_tokens") is not None]
        return {"agent_turn1_ttft_s": ttfts[0], "agent_later_ttft_s": later,
                "agent_later_over_turn1": later / ttfts[0] if later is not None else None,
                "agent_cached_tokens": statistics.median(cached) if cached else None}
    return {}


def summarize(bench: Bench, workers: dict[str, Worker], metrics: list[Metric],
              load: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians, ranges and per-repetition ratios for every metric."""
    per: dict[str, dict[str, dict[int, float]]] = {m.key: {e: {} for e in bench.engines} for m in metrics}
    flagged: dict[str, dict[str, bool]] = {m.key: {e: False for e in bench.engines} for m in metrics}
    fails: dict[str, dict[str, list[int]]] = {}
    for s in bench.samples:
        if not s["kept"]:
            continue
        for key, value in extract(s["case"], s["result"]).items():
            if key.startswith("failed"):
                tot = fails.setdefault(key, {}).setdefault(s["engine"], [0, 0])
                tot[0] += int(value or 0)
                tot[1] += s["result"].get("requests", 0)
                continue
            if value is None:
                continue
            per[key][s["engine"]][s["rep"]] = float(value)
            flagged[key][s["engine"]] |= bool(s["contaminated"])
    for e in bench.engines:
        for key, value in load.get(e, {}).items():
            if key in per and value is not None:
                per[key][e][0] = float(value)
                flagged[key][e] = bool(load[e].get("_contaminated")) and key != "peak_rss_mib"
    refs = [r for r in ("mistralrs", "hf") if r in bench.engines]
    pairs = [(x, r) for r in refs for x in bench.engines if x != r and not (r == "hf" and x == "mistralrs")]
    out: dict[str, Any] = {"pairs": [f"{x}/{r}" for x, r in pairs], "metrics": {}}
    for m in metrics:
        row: dict[str, Any] = {"label": m.label, "case": m.case, "better": m.better, "engines": {}, "ratios": {}}
        if m.key.startswith("failed"):
            row["engines"] = {e: {"failed": v[0], "requests": v[1]} for e, v in fails.get(m.key, {}).items()}
            out["metrics"][m.key] = row
            continue
        for e in bench.engines:
            vals = per[m.key][e]
            if vals:
                v = list(vals.values())
                row["engines"][e] = {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v),
                                     "values": vals, "contaminated_kept": flagged[m.key][e]}
        if m.better:
            for x, r in pairs:
                common = sorted(set(per[m.key][x]) & set(per[m.key][r]))
                ratios = [per[m.key][x][k] / per[m.key][r][k] for k in common if per[m.key][r][k]]
                if ratios:
                    row["ratios"][f"{x}/{r}"] = {"median": statistics.median(ratios), "min": min(ratios),
                                                 "max": max(ratios), "n": len(ratios)}
        out["metrics"][m.key] = row
    return out


def cell(entry: dict[str, Any] | None, fmt: str) -> str:
    if not entry:
        return "–"
    if "failed" in entry:
        return f"{entry['failed']}/{entry['requests']}"
    mark = " †" if entry.get("contaminated_kept") else ""
    if entry.get("n", 1) > 1 and entry["min"] != entry["max"]:
        return f"{entry['median']:{fmt}} ({entry['min']:{fmt}}–{entry['max']:{fmt}}){mark}"
    return f"{entry['median']:{fmt}}{mark}"


def markdown_table(summary: dict[str, Any], engines: list[str], metrics: list[Metric]) -> str:
    pairs = summary["pairs"]
    head = ["figure", *[LABEL[e] for e in engines],
            *[f"{LABEL[x]} ÷ {LABEL[r]}" for x, r in (p.split("/") for p in pairs)]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        row = summary["metrics"].get(m.key)
        if row is None or not row["engines"]:
            continue
        cells = [row["label"], *[cell(row["engines"].get(e), m.fmt) for e in engines]]
        for p in pairs:
            r = row["ratios"].get(p)
            cells.append(f"{r['median']:.2f}×" if r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def contamination_table(bench: Bench, workers: dict[str, Worker]) -> tuple[str, dict[str, Any]]:
    zero = {"attempts": 0, "discarded": 0, "kept_contaminated": 0, "errors": 0, "loads_discarded": 0,
            "loads_kept_contaminated": 0}
    stats: dict[str, dict[str, int]] = {e: dict(zero) for e in bench.engines}
    for w in workers.values():
        st = stats.setdefault(w.engine, dict(zero))
        st["loads_discarded"] += int(w.ready.get("load_attempts_discarded", 0))
        st["loads_kept_contaminated"] += int(bool(w.ready.get("load_contaminated")))
    for s in bench.samples:
        st = stats.setdefault(s["engine"], dict(zero))
        st["attempts"] += 1
        if not s["ok"]:
            st["errors"] += 1
        elif not s["kept"]:
            st["discarded"] += 1
        elif s["contaminated"]:
            st["kept_contaminated"] += 1
    lines = ["| engine | request attempts | discarded (contaminated, re-run) | kept although contaminated † "
             "| errors | worker loads discarded (respawned) | loads kept although contaminated † |",
             "|---|---|---|---|---|---|---|"]
    for e in bench.engines:
        st = stats[e]
        lines.append(f"| {LABEL[e]} | {st['attempts']} | {st['discarded']} | {st['kept_contaminated']} "
                     f"| {st['errors']} | {st['loads_discarded']} | {st['loads_kept_contaminated']} |")
    return "\n".join(lines), stats


# ---- chart ---------------------------------------------------------------------------------------------------
def short(y: float) -> str:
    return f"{y:.0f}" if y >= 100 else f"{y:.1f}" if y >= 10 else f"{y:.3g}"


def draw_chart(summary: dict[str, Any], engines: list[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("throughput (tok/s, higher is better)", True,
         [("decode_tok_s", "decode\n1 stream"), ("agg8_tok_s", "aggregate\n8 concurrent"),
          ("agg32_tok_s", "aggregate\n32 concurrent"), ("prefill_tok_s", "prefill\nlong prompt")]),
        ("latency (s, lower is better)", True,
         [("ttft_short_s", "TTFT\nshort prompt"), ("ttft_long_s", "TTFT\nlong prompt"),
          ("agent_turn1_ttft_s", "agent\nturn 1"), ("agent_later_ttft_s", "agent\nlater turns")]),
        ("load (s, lower is better)", True,
         [("load_s", "model load"), ("spawn_to_ready_s", "spawn → ready"), ("cold_ttft_s", "first TTFT")]),
        ("memory (MiB, lower is better)", False, [("peak_rss_mib", "peak RSS (VmHWM)")]),
    ]
    colors = {"agentkit": "#1f77b4", "hf": "#ff7f0e", "mistralrs": "#2ca02c"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    width = 0.8 / max(1, len(engines))
    for ax, (ptitle, log, items) in zip(axes.flat, panels):
        items = [(k, lab) for k, lab in items if summary["metrics"].get(k, {}).get("engines")]
        for j, e in enumerate(engines):
            xs, ys, lo, hi = [], [], [], []
            for i, (k, _) in enumerate(items):
                entry = summary["metrics"][k]["engines"].get(e)
                if entry and entry["median"] > 0:
                    xs.append(i + (j - (len(engines) - 1) / 2) * width)
                    ys.append(entry["median"])
                    lo.append(entry["median"] - entry["min"])
                    hi.append(entry["max"] - entry["median"])
            if xs:
                bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=LABEL[e], color=colors.get(e))
                ax.bar_label(bars, labels=[short(y) for y in ys], fontsize=7, padding=2)
        ax.set_xticks(range(len(items)), [lab for _, lab in items], fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_title(ptitle, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- environment -----------------------------------------------------------------------------------------------
def environment(workers: dict[str, Worker], params: Params) -> dict[str, Any]:
    cpu = "?"
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "?":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu, "cpus": os.cpu_count(), "mem_total_gib": mem,
        "cpu_flags_of_note": [x for x in flags if x.startswith(("avx512", "amx", "avx2", "avx_vnni"))],
        "kernel": platform.release(), "python": platform.python_version(), "git_commit": commit,
        "torch_threads_flag": params.threads, "loadavg_at_end": os.getloadavg(),
    }
    for name, w in workers.items():
        info = w.ready.get("info", {})
        for k in ("torch", "transformers", "mistralrs", "agentkit"):
            if info.get(k):
                env[k] = info[k]
        if "torch_threads" in info:
            env.setdefault("torch_threads", {})[name] = info["torch_threads"]
    return env
