"""The run of bench/compare.py: parameters, worker start-up, and the interleaved repetitions.

Scope: `Params`, `start_worker` (load and warm-up, contamination-checked and respawned),
`worker_name`, `build_batch_prompts`, and `Bench`, which runs every (repetition, case, engine)
sample with the contamination check and re-runs, and keeps every sample. Non-goals: the summary,
tables and chart (bench/compare_report.py).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from compare_prompts import P1, QUESTIONS, USER_TURNS, WARMUP, agent_system, long_prompt, user
from tqdm import tqdm
from worker_client import Worker, WorkerError, own_cpu_s, perf, process_cpu_s, system_busy_s


@dataclass
class Params:
    """Token counts and repetition settings of one run."""

    reps: int = 5
    decode_tokens: int = 128
    long_tokens: int = 16
    batch_tokens: int = 128
    agent_tokens: int = 32
    agent_turns: int = 5
    max_retries: int = 5
    threads: int = 2
    max_seqs: int = 32
    request_timeout_s: float = 1800.0


def start_worker(name: str, engine: str, flags: list[str], log_dir: str, p: Params) -> Worker:
    """Spawn a worker and send it one short warm-up request (the cold first-request TTFT).

    Load and warm-up are contamination-checked like every sample: a worker whose load or warm-up
    saw too much foreign CPU is shut down and respawned after 5 s, 10 s, ... (at most max_retries).
    """
    discarded = 0
    for attempt in range(p.max_retries + 1):
        w = Worker(name, engine, flags, log_dir, timeout_s=900)
        s0, w0, d0, t0 = system_busy_s(), process_cpu_s(w.pid), own_cpu_s(), perf()
        warm = w.call({"cmd": "stream", "messages": user(WARMUP), "max_tokens": 8, "ignore_eos": True}, 900)
        wall = perf() - t0
        other = (system_busy_s() - s0) - (process_cpu_s(w.pid) - w0) - (own_cpu_s() - d0)
        w.ready["cold_first_request"] = warm
        w.ready["other_cpu_during_warmup_s"] = other
        load_other = w.ready["other_cpu_during_load_s"]
        contaminated = load_other > 0.1 * w.spawn_to_ready_s + 0.2 or other > 0.1 * wall + 0.2
        w.ready["load_contaminated"] = contaminated
        w.ready["load_attempts_discarded"] = discarded
        if not contaminated or attempt == p.max_retries:
            return w
        w.close()
        discarded += 1
        wait = 5.0 * (attempt + 1)
        tqdm.write(f"{name}: load/warm-up contaminated ({load_other:.1f} + {other:.1f} foreign CPU-s); "
                   f"respawning in {wait:.0f} s", file=sys.stderr)
        time.sleep(wait)
    raise AssertionError("unreachable")


def worker_name(engine: str, case: str) -> str:
    """Which worker serves a case: the agent case runs on a prefix-cache-ON worker (not for HF)."""
    return f"{engine}+pc" if case == "agent" and engine != "hf" else engine


def build_batch_prompts(tokenizer: Worker, n: int) -> tuple[list[str], list[int]]:
    """n distinct questions with pairwise-distinct token lengths (mistral.rs fails equal-length bursts)."""
    texts = [QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" (variant {i})") for i in range(n)]
    fillers = [" Please be brief.", " Thanks!", " Go."]
    for _ in range(100):
        counts = tokenizer.call({"cmd": "tokenize", "texts": texts}, 120)["counts"]
        seen: set[int] = set()
        clash = False
        for i, c in enumerate(counts):
            if c in seen:
                texts[i] += fillers[i % len(fillers)]
                clash = True
            seen.add(c)
        if not clash:
            return texts, counts
    raise RuntimeError("could not make the batch prompt lengths distinct")


class Bench:
    """Runs the interleaved repetitions and keeps every sample."""

    def __init__(self, engines: list[str], cases: list[str], params: Params, workers: dict[str, Worker],
                 batch_prompts: list[str]) -> None:
        self.engines, self.cases, self.p, self.workers = engines, cases, params, workers
        self.batch_prompts = batch_prompts
        self.samples: list[dict[str, Any]] = []

    def command(self, case: str, rep: int, attempt: int) -> dict[str, Any]:
        p = self.p
        if case == "decode":
            return {"cmd": "stream", "messages": user(P1), "max_tokens": p.decode_tokens, "ignore_eos": True}
        if case == "long_prompt":
            return {"cmd": "stream", "messages": user(long_prompt(rep, attempt)), "max_tokens": p.long_tokens,
                    "ignore_eos": True}
        if case in ("batch8", "batch32"):
            n = 8 if case == "batch8" else 32
            return {"cmd": "batch", "conversations": [user(t) for t in self.batch_prompts[:n]],
                    "max_tokens": p.batch_tokens, "ignore_eos": True}
        if case == "agent":
            return {"cmd": "conversation", "system": agent_system(rep, attempt),
                    "users": USER_TURNS[: p.agent_turns], "max_tokens": p.agent_tokens}
        raise ValueError(case)

    def measure(self, engine: str, case: str, rep: int, bar: tqdm) -> None:
        w = self.workers[worker_name(engine, case)]
        for attempt in range(self.p.max_retries + 1):
            cmd = self.command(case, rep, attempt)
            s0, w0, d0, t0 = system_busy_s(), process_cpu_s(w.pid), own_cpu_s(), perf()
            try:
                res = w.call(cmd, self.p.request_timeout_s)
            except WorkerError as exc:
                res = {"ok": False, "error": str(exc)}
            wall = perf() - t0
            worker_cpu = process_cpu_s(w.pid) - w0
            other = (system_busy_s() - s0) - worker_cpu - (own_cpu_s() - d0)
            limit = 0.1 * wall + 0.2
            contaminated = other > limit
            last = attempt == self.p.max_retries
            sample = {"rep": rep, "case": case, "engine": engine, "worker": w.name, "attempt": attempt,
                      "wall_s": wall, "worker_cpu_s": worker_cpu, "other_cpu_s": other, "limit_s": limit,
                      "contaminated": contaminated, "loadavg_1m": os.getloadavg()[0],
                      "ok": bool(res.pop("ok", False)), "result": res}
            if not sample["ok"]:
                sample["kept"] = False
                self.samples.append(sample)
                tqdm.write(f"[{engine}/{case}] error: {str(res.get('error'))[:300]}", file=sys.stderr)
                return
            sample["kept"] = not contaminated or last
            self.samples.append(sample)
            if sample["kept"]:
                return
            wait = 5.0 * (attempt + 1)
            bar.set_postfix_str(f"{engine}/{case}: contaminated ({other:.2f} CPU-s), retry in {wait:.0f} s")
            time.sleep(wait)

    def run(self) -> None:
        total = self.p.reps * len(self.cases) * len(self.engines)
        with tqdm(total=total, desc="samples", file=sys.stderr, dynamic_ncols=True) as bar:
            for rep in range(self.p.reps):
                k = rep % len(self.engines)
                order = self.engines[k:] + self.engines[:k]
                for case in self.cases:
                    for engine in order:
                        bar.set_description(f"rep {rep + 1}/{self.p.reps} {case} {engine}")
                        self.measure(engine, case, rep, bar)
                        bar.update()
