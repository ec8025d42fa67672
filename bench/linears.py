"""Microbenchmark of the engine's linear kinds on SmolLM2-135M shapes: picks `quant.AUTO_SWITCH_M`.

Usage: python bench/linears.py [--threads 1 2] [--m 1 2 4 8 16 32 64 512] [--budget 0.3]
                               [--accuracy] [--json bench/results/linears.json]

For each shape (fused qkv 576->960, o 576->576, fused gate/up 576->3072, down 1536->576, LM head
576->49152; computed from the SmolLM2 config values below), each batch size M and each kind
(dense-fp32, dense-bf16 with fp32 activations cast inside, int8 per channel, int4 group 32),
prints the median microseconds per call as a markdown table, then the whole-model sum for M=1
(30 layers x 4 linears + head) and, per shape, the smallest M at which the best dense kind beats
the best packed kind (the switch point of ``auto``). ``--accuracy`` adds the LM-head logit error
of each kind against fp32 on random activations (the real tied Q8_0 embedding when the SmolLM2
GGUF is installed). The load average is printed before and after: on a shared 2-core machine
2-thread figures are only meaningful when it is low.

Non-goals: end-to-end tok/s (bench/quick.py), CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from agentkit.engine.models.kernels import DenseLinear, Int4Linear, Int8Linear
from agentkit.engine.quant import quantize_int4_g32, quantize_int8_per_channel

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, VOCAB, LAYERS = 576, 9, 3, 64, 1536, 49152, 30
SHAPES = {  # name: (K, N)
    "qkv": (HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM),
    "o": (HEADS * HEAD_DIM, HIDDEN),
    "gate_up": (HIDDEN, 2 * INTERMEDIATE),
    "down": (INTERMEDIATE, HIDDEN),
    "lm_head": (HIDDEN, VOCAB),
}
KINDS = ("dense-fp32", "dense-bf16", "int8", "int4")


def make(kind: str, w: torch.Tensor) -> torch.nn.Module:
    """The module of `kind` for fp32 weight `w` (random, so only the speed means anything)."""
    if kind == "dense-fp32":
        return DenseLinear(w, None)
    if kind == "dense-bf16":
        return DenseLinear(w.to(torch.bfloat16), None)
    if kind == "int8":
        q, s = quantize_int8_per_channel(w)
        return Int8Linear(q, s, None, torch.device("cpu"))
    mod = Int4Linear.pack(*quantize_int4_g32(w), None, torch.device("cpu"))
    assert mod is not None, "int4 packing unavailable"
    return mod


def time_us(fn, x: torch.Tensor, budget: float, min_reps: int = 5, max_reps: int = 400) -> float:
    """Median microseconds per call after two warm-up calls, within about `budget` seconds."""
    with torch.inference_mode():
        fn(x)
        fn(x)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < budget):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def run(threads: int, ms: list[int], budget: float) -> dict[str, dict[int, dict[str, float]]]:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name, (k, n) in SHAPES.items():
        w = torch.randn(n, k, generator=gen) * 0.05
        mods = {kind: make(kind, w) for kind in KINDS}
        out[name] = {}
        for m in ms:
            x = torch.randn(m, k, generator=gen)
            out[name][m] = {kind: time_us(mod, x, budget) for kind, mod in mods.items()}
        del mods
    return out


def table(res: dict[str, dict[int, dict[str, float]]], threads: int) -> str:
    lines = [
        f"| shape (K->N) | M | {' | '.join(KINDS)} | best |",
        "|---|---|" + "---|" * (len(KINDS) + 1),
    ]
    for name, rows in res.items():
        k, n = SHAPES[name]
        for m, cell in rows.items():
            best = min(cell, key=cell.get)
            vals = " | ".join(f"**{cell[c]:.0f}**" if c == best else f"{cell[c]:.0f}" for c in KINDS)
            lines.append(f"| {name} {k}->{n} | {m} | {vals} | {best} |")
    m1 = {kind: LAYERS * sum(res[s][1][kind] for s in ("qkv", "o", "gate_up", "down")) for kind in KINDS}
    head = {kind: res["lm_head"][1][kind] for kind in KINDS}
    lines.append("")
    lines.append(f"Whole model at M=1, {threads} thread(s): 30 x (qkv+o+gate_up+down) + lm_head, ms")
    lines.append("")
    lines.append(f"| layers kind | {' | '.join('+ head ' + k for k in KINDS)} |")
    lines.append("|---|" + "---|" * len(KINDS))
    for kind in KINDS:
        cells = " | ".join(f"{(m1[kind] + head[h]) / 1000:.2f}" for h in KINDS)
        lines.append(f"| {kind} ({m1[kind] / 1000:.2f} without head) | {cells} |")
    lines.append("")
    lines.append("Switch points (smallest M where the best dense kind beats the best packed kind):")
    for name, rows in res.items():
        switch = None
        for m, cell in rows.items():
            dense = min(cell["dense-fp32"], cell["dense-bf16"])
            packed = min(cell["int8"], cell["int4"])
            if dense < packed:
                switch = m
                break
        lines.append(f"- {name}: M >= {switch}")
    return "\n".join(lines)


def run_model(threads: int, ms: list[int], reps: int) -> dict[int, dict[str, dict[str, float]]]:
    """Median ms of one pass over 30 distinct layers (4 linears each), and of the head, per kind.

    Unlike the per-shape table, where one matrix is called repeatedly and stays in cache, this
    streams all weights from DRAM as a real decode step does.
    """
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    xs = {m: {k: torch.randn(m, k, generator=gen) for k in (HIDDEN, INTERMEDIATE)} for m in ms}
    out: dict[int, dict[str, dict[str, float]]] = {m: {} for m in ms}
    for kind in KINDS:
        layers = [
            make(kind, torch.randn(SHAPES[s][1], SHAPES[s][0], generator=gen) * 0.05)
            for _ in range(LAYERS)
            for s in ("qkv", "o", "gate_up", "down")
        ]
        head = make(kind, torch.randn(VOCAB, HIDDEN, generator=gen) * 0.05)
        with torch.inference_mode():
            for m in ms:
                layer_t, head_t = [], []
                for _ in range(reps + 1):
                    t0 = time.perf_counter()
                    for mod in layers:
                        mod(xs[m][mod.in_features])
                    t1 = time.perf_counter()
                    head(xs[m][HIDDEN])
                    layer_t.append(t1 - t0)
                    head_t.append(time.perf_counter() - t1)
                out[m][kind] = {
                    "layers": statistics.median(layer_t[1:]) * 1e3,
                    "head": statistics.median(head_t[1:]) * 1e3,
                }
        del layers, head
    return out


def model_table(res: dict[int, dict[str, dict[str, float]]], threads: int) -> str:
    lines = [
        f"Streaming whole model, {threads} thread(s): ms per pass over 30 x (qkv+o+gate_up+down)"
        " distinct weights (layers) and the 49152x576 head",
        "",
        f"| M | {' | '.join('layers ' + k for k in KINDS)} | {' | '.join('head ' + k for k in KINDS)} |",
        "|---|" + "---|" * (2 * len(KINDS)),
    ]
    for m, cell in res.items():
        lb = min(KINDS, key=lambda k: cell[k]["layers"])
        hb = min(KINDS, key=lambda k: cell[k]["head"])
        lay = " | ".join(f"**{cell[k]['layers']:.2f}**" if k == lb else f"{cell[k]['layers']:.2f}" for k in KINDS)
        hd = " | ".join(f"**{cell[k]['head']:.2f}**" if k == hb else f"{cell[k]['head']:.2f}" for k in KINDS)
        lines.append(f"| {m} | {lay} | {hd} |")
    return "\n".join(lines)


def head_accuracy() -> str:
    """Max |logit - fp32 logit| of each head kind, random N(0,1) activations of RMS 1."""
    gen = torch.Generator().manual_seed(1)
    source = "random N(0, 0.05) weights"
    w = torch.randn(VOCAB, HIDDEN, generator=gen) * 0.05
    try:
        import numpy as np
        from gguf.quants import dequantize

        from agentkit.engine.loading.gguf import open_reader
        from agentkit.testing import smollm2_gguf

        found = smollm2_gguf()
        if found:
            reader = open_reader(os.path.join(*found))
            t = next(t for t in reader.tensors if t.name == "token_embd.weight")
            w = torch.from_numpy(dequantize(t.data.view(np.ndarray), t.tensor_type).copy())
            source = f"SmolLM2 token_embd ({t.tensor_type.name}, dequantized)"
    except Exception as exc:  # no GGUF: random weights
        print(f"(SmolLM2 GGUF not used: {exc})", file=sys.stderr)
    x = torch.randn(64, HIDDEN, generator=gen)
    ref = x.double() @ w.double().t()
    lines = [f"LM head logit error vs fp64, {source}, 64 random N(0,1) rows (max |logit| {ref.abs().max():.2f}):", ""]
    lines.append("| kind | max abs error | mean abs error | argmax agreement |")
    lines.append("|---|---|---|---|")
    for kind in KINDS:
        y = make(kind, w)(x).double()
        err = (y - ref).abs()
        agree = (y.argmax(-1) == ref.argmax(-1)).float().mean().item()
        lines.append(f"| {kind} | {err.max():.4f} | {err.mean():.5f} | {agree:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--m", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 512])
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timing per cell (>= 5 calls)")
    ap.add_argument("--model-m", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                    help="M values of the streaming whole-model pass (none: skip it)")
    ap.add_argument("--model-reps", type=int, default=7)
    ap.add_argument("--shapes", action=argparse.BooleanOptionalAction, default=True,
                    help="the per-shape table (--no-shapes skips it)")
    ap.add_argument("--accuracy", action="store_true", help="also report LM-head logit errors")
    ap.add_argument("--json", default=None, help="write the raw results here")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()},"
          f" {time.strftime('%Y-%m-%d %H:%M')}, load average before: {loadavg()}")
    results = {}
    for threads in args.threads:
        if args.model_m:
            mres = run_model(threads, args.model_m, args.model_reps)
            results[f"model-{threads}"] = mres
            print(f"\n### {threads} thread(s), streaming model (load average after: {loadavg()})\n")
            print(model_table(mres, threads))
        if args.shapes:
            res = run(threads, args.m, args.budget)
            results[threads] = res
            print(f"\n### {threads} thread(s), per shape, median us per call (load average after: {loadavg()})\n")
            print(table(res, threads))
    if args.accuracy:
        print()
        print(head_accuracy())
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"torch": torch.__version__, "loadavg_end": loadavg(), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
