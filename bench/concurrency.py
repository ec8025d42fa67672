"""Aggregate throughput of agentkit on the SmolLM2 GGUF against `max_seqs` and `num_threads`.

Usage:
  python bench/concurrency.py max-seqs [--concurrency 8,16,32,64] [--max-seqs 8,16,32,64] [--tokens 32] [--reps 2]
  python bench/concurrency.py threads [--threads 1,2] [--busy 0,1] [--requests 32] [--tokens 32] [--reps 2]

`max-seqs`: one Runner; for every number of concurrent requests (one Python thread each, all sent at
once, `ignore_eos`, `--tokens` each), the engine's `max_seqs` is set to each value in turn (order
rotated every repetition) and aggregate tok/s = all completion tokens / wall time is recorded.
`threads`: a fresh worker process per `num_threads` value, alternated, without and with one foreign
busy process (`python -c "while True: pass"`) on the machine. Every sample records tokens per CPU-second of
this process tree (robust to a busy machine with `--num-threads 1`) and the CPU time other processes used meanwhile (/proc/stat busy time minus this process tree's), so a reader can
tell a quiet sample from a noisy one. Writes bench/results/concurrency_<mode>.json.

Non-goals: other engines (bench/compare.py), single-stream latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle and iowait


def _own_cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _runner(num_threads: int | None) -> Any:
    """The SmolLM2 GGUF Runner (prefix cache off: the prompts differ anyway)."""
    from agentkit import Runner, Which
    from agentkit.testing import smollm2_gguf

    d, f = smollm2_gguf()
    return Runner(Which.GGUF(quantized_model_id=d, quantized_filename=f, tok_model_id=None), progress=False,
                  prefix_cache_n=0, num_threads=num_threads, max_seqs=64)


def burst(runner: Any, n: int, tokens: int) -> dict[str, float]:
    """n requests at once from n threads: aggregate tok/s, wall, foreign CPU seconds."""
    from agentkit import ChatCompletionRequest

    done = [0] * n

    def one(i: int) -> None:
        r = runner.send_chat_completion_request(ChatCompletionRequest(
            model="default", messages=f"Write one sentence about the number {i}.", max_tokens=tokens, ignore_eos=True))
        done[i] = r.usage.completion_tokens

    b0, c0, t0 = _busy_ticks(), _own_cpu(), time.perf_counter()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    own = _own_cpu() - c0
    foreign = max(0.0, (_busy_ticks() - b0) / CLK_TCK - own)
    return {"tok_s": sum(done) / wall, "wall_s": wall, "foreign_cpu_s": foreign, "tok_per_cpu_s": sum(done) / own}


def mode_max_seqs(args: argparse.Namespace) -> dict[str, Any]:
    runner = _runner(args.num_threads)
    engine = runner.served_model().engine
    burst(runner, 4, 8)  # warm-up
    values = [int(x) for x in args.max_seqs.split(",")]
    samples: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for c in (int(x) for x in args.concurrency.split(",")):
            order = values[rep % len(values):] + values[: rep % len(values)]
            for m in order:
                engine.scheduler.max_seqs = m
                s = burst(runner, c, args.tokens) | {"concurrency": c, "max_seqs": m, "rep": rep}
                samples.append(s)
                print(json.dumps(s), flush=True)
    runner.shutdown()
    return {"samples": samples}


def mode_threads(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for busy in (int(x) for x in args.busy.split(",")):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                values = args.threads.split(",")
                for t in values[rep % len(values):] + values[: rep % len(values)]:
                    out = subprocess.run([sys.executable, __file__, "_worker", "--threads", t, "--requests",
                                          str(args.requests), "--tokens", str(args.tokens)],
                                         capture_output=True, text=True, check=True)
                    s = json.loads(out.stdout.strip().splitlines()[-1]) | {"threads": int(t), "busy": busy, "rep": rep}
                    if hog is not None:  # the hog's own CPU is not noise: it is the condition measured
                        s["foreign_cpu_s"] = max(0.0, s["foreign_cpu_s"] - s["wall_s"])
                    samples.append(s)
                    print(json.dumps(s), flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    return {"samples": samples}


def summarize(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault(tuple(s[k] for k in keys), []).append(s)
    lines = [" | ".join(keys) + " | aggregate tok/s median (range) | tokens per CPU-s | wall s | foreign CPU s (max)"]
    for key, ss in sorted(groups.items()):
        v = [s["tok_s"] for s in ss]
        lines.append(" | ".join(map(str, key)) + f" | {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
                     f" | {statistics.median(s['tok_per_cpu_s'] for s in ss):.1f} | {statistics.median(s['wall_s'] for s in ss):.1f} | {max(s['foreign_cpu_s'] for s in ss):.1f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["max-seqs", "threads", "_worker"])
    ap.add_argument("--concurrency", default="8,16,32,64")
    ap.add_argument("--max-seqs", default="8,16,32,64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--num-threads", type=int, default=None, help="max-seqs mode: num_threads (default: agentkit's)")
    ap.add_argument("--busy", default="0,1")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    if args.mode == "_worker":
        runner = _runner(int(args.threads))
        burst(runner, 4, 8)
        print(json.dumps(burst(runner, args.requests, args.tokens)), flush=True)
        runner.shutdown()
        return
    result = mode_max_seqs(args) if args.mode == "max-seqs" else mode_threads(args)
    keys = ("concurrency", "max_seqs") if args.mode == "max-seqs" else ("busy", "threads")
    result["table"] = summarize(result["samples"], keys)
    result["command"] = sys.argv
    print("\n".join(result["table"]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"concurrency_{args.mode.replace('-', '_')}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
