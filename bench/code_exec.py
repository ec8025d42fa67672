"""Sandboxed code execution: what the sandbox costs, and whether it contains the escape suite.

Figures, each for the sandboxed executor and, interleaved in the same run as the reference, the
same executor with isolation off (`AGENTKIT_SANDBOX=off`):
- *cold start* (no spare): `LocalExecutor(spec)` + `start()` until the kernel answers (median of
  --reps, after one discarded warm-up per mode: the once-per-process sandbox probe is not counted),
  as wall time and as CPU seconds (kernel process + host), which other jobs on the machine do not
  inflate;
- *session start with the spare ready*: an `ExecutorPool(spare=...)` (what the Runner uses by
  default) whose spare kernel has finished starting; from `claim(session)` to the result of the
  session's first `1+1` (which runs while the pool starts the next spare beside it);
- *warm round trip*: `execute("1+1")` on a started kernel (median of --calls per repetition);
- *restart after a kill*: a cell ignoring SIGINT and SIGTERM at a 0.5 s timeout; the time from
  the end of the grace period to the result (kill of the uid, new kernel ready);
- *escape suite*: tests/plugins/code_exec/test_escape.py run as is (deny tests that passed =
  contained) and in sabotage mode (deny tests that failed = the tests can fail).
Goals (plugin-anchors.md §1): start ≤ 1.0 s (the cold start), warm ≤ 30 ms, restart ≤ 2 s, 100% contained.
Run: flock /tmp/bench.lock .venv/bin/python bench/code_exec.py [--reps 5] [--calls 50] [--no-suite]
(as root, for the sandbox; `--render` re-renders the table from bench/results/code_exec.json).
Writes bench/results/code_exec.json and prints the table (also in bench/results/code_exec.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentkit.plugins.code_exec import ExecutorPool, ExecutorSpec, LocalExecutor  # noqa: E402
from agentkit.testing.escape_suite import run_escape_suite  # noqa: E402

GOALS = {"start_s": 1.0, "start_cpu_s": 1.0, "spare_start_s": 1.0, "warm_ms": 30.0, "restart_s": 2.0}
IGNORE_SIGNALS = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                  "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass")


def _set_mode(sandboxed: bool) -> None:
    if sandboxed:
        os.environ.pop("AGENTKIT_SANDBOX", None)
    else:
        os.environ["AGENTKIT_SANDBOX"] = "off"


def one_repetition(sandboxed: bool, calls: int, grace_s: float) -> dict:
    _set_mode(sandboxed)
    workdir = Path(tempfile.mkdtemp(prefix="agentkit-bench-wd-"))
    try:
        started, host_cpu = time.perf_counter(), time.process_time()
        executor = LocalExecutor(ExecutorSpec(workdir=workdir), grace_s=grace_s)
        executor.start()
        start_s = time.perf_counter() - started
        start_cpu_s = time.process_time() - host_cpu + _cpu_seconds(executor.kernel_pid)
        level = executor.isolation.level
        executor.execute("1+1", 10)  # first cell compiles the display machinery
        warm = []
        for _ in range(calls):
            t0 = time.perf_counter()
            result = executor.execute("1+1", 10)
            warm.append((time.perf_counter() - t0) * 1000.0)
            assert result.result == "2", result
        timeout_s = 0.5
        t0 = time.perf_counter()
        killed = executor.execute(IGNORE_SIGNALS, timeout_s)
        restart_s = time.perf_counter() - t0 - timeout_s - grace_s
        assert killed.status == "killed", killed
        assert executor.execute("1+1", 10).result == "2"
        executor.close()
        spare_start_s = _spare_start(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _set_mode(True)
    return {"start_s": start_s, "start_cpu_s": start_cpu_s, "spare_start_s": spare_start_s,
            "warm_ms": statistics.median(warm), "restart_s": restart_s, "level": level}


def _spare_start(root: Path) -> float:
    """A new session's start as the Runner's pool serves it: claim with the spare ready, first 1+1."""
    made = iter(range(1_000_000))
    pool = ExecutorPool(spare=lambda: ExecutorSpec(workdir=root / f"session-{next(made)}"))
    try:
        pool.claim("first")  # a pool's first session starts cold; it also fills the spare
        if not pool.wait_spare(60):
            raise RuntimeError("the spare executor did not start within 60 s")
        t0 = time.perf_counter()
        executor, _ = pool.claim("second")
        result = executor.execute("1+1", 10)
        elapsed = time.perf_counter() - t0
        assert result.result == "2", result
        return elapsed
    finally:
        pool.close_all()


def _cpu_seconds(pid: int | None) -> float:
    """utime + stime of `pid` (kept across the launcher's exec), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def _span(samples: list[dict], key: str, fmt: str) -> str:
    values = [s[key] for s in samples]
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def table(data: dict) -> str:
    sand, off = data["sandboxed"], data["no_isolation"]
    rows = ["| figure | sandboxed | no isolation (reference) | sandboxed ÷ reference | goal | met |",
            "|---|---|---|---|---|---|"]
    for key, label, fmt, unit in (("start_s", "cold kernel start, no spare (s)", ".3f", "s"),
                                  ("start_cpu_s", "cold kernel start, CPU seconds (kernel + host)", ".3f", "s"),
                                  ("spare_start_s", "session start with the spare ready, to the first `1+1` "
                                   "result (s)", ".3f", "s"),
                                  ("warm_ms", "warm `1+1` round trip (ms)", ".1f", "ms"),
                                  ("restart_s", "restart after a kill (s)", ".3f", "s")):
        ratio = _median(sand, key) / _median(off, key)
        met = "yes" if _median(sand, key) <= GOALS[key] else "no"
        rows.append(f"| {label} | {_span(sand, key, fmt)} | {_span(off, key, fmt)} | {ratio:.2f}× | "
                    f"≤ {GOALS[key]:g} {unit} | {met} |")
    suite = data.get("escape_suite")
    if suite:
        s, b = suite["sandboxed"], suite["sabotage"]
        contained = f"{s['deny_passed']}/{s['deny_total']}"
        rows.append(f"| escape suite: deny tests contained | {contained} | {b['deny_passed']}/{b['deny_total']} "
                    f"| – | 100% | {'yes' if s['deny_passed'] == s['deny_total'] else 'no'} |")
        rows.append(f"| escape suite: allow tests passing | {s['allow_passed']}/{s['allow_total']} | "
                    f"{b['allow_passed']}/{b['allow_total']} | – | 100% | "
                    f"{'yes' if s['allow_passed'] == s['allow_total'] else 'no'} |")
        rows.append(f"| escape suite: executor limits holding | {s['limit_passed']}/{s['limit_total']} | "
                    f"{b['limit_passed']}/{b['limit_total']} | – | 100% | "
                    f"{'yes' if s['limit_passed'] == s['limit_total'] else 'no'} |")
        rows.append(f"| sabotage: deny tests failing with isolation off | – | {b['deny_failed']}/{b['deny_total']} "
                    f"| – | 100% | {'yes' if b['deny_failed'] == b['deny_total'] else 'no'} |")
    notes = [f"- Medians over {len(sand)} interleaved repetitions (range in parentheses); warm round trip: "
             f"median of {data['calls']} calls per repetition. Isolation level measured: {sand[0]['level']}.",
             "- Cold start: the most a Runner's first session waits for at its first call (its kernel starts "
             "in the background when its tools are built), and what every session waits for with "
             "`plugin_options={'code_exec': {'spare': False}}` or a configured working_directory. Session "
             "start with the spare ready: what later sessions wait for by default "
             "(the Runner keeps one started, never-used kernel for the next new session, refilled in the "
             "background); it includes the first cell, run while the next spare starts beside it.",
             f"- Restart: from the end of the {data['grace_s']:g} s grace period to the result of a cell that "
             "ignores SIGINT and SIGTERM (kill of the sandbox uid + a new kernel ready).",
             "- CPU seconds: the kernel process's utime + stime when it is ready (the launcher execs, so "
             "they include the sandbox setup) plus this process's CPU during the start: what the start "
             "costs whatever else runs; on an idle core the wall time is close to it.",
             f"- Machine: {data['machine']}; load average at start {data['loadavg']} (other jobs share the CPUs)."]
    return "\n".join(rows + [""] + notes)


def _suite_counts(counts) -> dict:
    out = {}
    for kind in ("deny", "allow", "limit"):
        out[f"{kind}_total"] = counts.total(kind)
        for outcome in ("passed", "failed", "skipped"):
            out[f"{kind}_{outcome}"] = counts.count(kind, outcome)
        out[f"{kind}_names_failed"] = counts.names(kind, "failed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--no-suite", action="store_true", help="skip the escape suite runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--render", action="store_true", help="only re-render the table from code_exec.json")
    args = parser.parse_args()
    if args.render:
        text = table(json.loads((args.out / "code_exec.json").read_text()))
        (args.out / "code_exec.md").write_text(text + "\n")
        print(text)
        return
    data: dict = {"sandboxed": [], "no_isolation": [], "calls": args.calls, "grace_s": args.grace,
                  "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
                  "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()), "goals": GOALS}
    for sandboxed in (True, False):  # warm-up, discarded: the one-off probe and the page cache
        one_repetition(sandboxed, 3, args.grace)
    for rep in range(args.reps):
        order = (True, False) if rep % 2 == 0 else (False, True)
        for sandboxed in order:
            sample = one_repetition(sandboxed, args.calls, args.grace)
            data["sandboxed" if sandboxed else "no_isolation"].append(sample)
            print(f"rep {rep + 1} {'sandboxed' if sandboxed else 'off':9s} start {sample['start_s']:.3f} s "
                  f"spare {sample['spare_start_s']:.3f} s "
                  f"warm {sample['warm_ms']:.1f} ms restart {sample['restart_s']:.3f} s", flush=True)
    if not args.no_suite:
        data["escape_suite"] = {"sandboxed": _suite_counts(run_escape_suite(ROOT, sabotage=False)),
                                "sabotage": _suite_counts(run_escape_suite(ROOT, sabotage=True))}
    text = table(data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "code_exec.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "code_exec.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
