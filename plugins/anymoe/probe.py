"""Running labelled prompts through an AnyMoE model up to its last MoE layer, many per forward.

Gate training and evaluation (routing decisions) only need what happens up to the last MoE
layer, never logits. `forward_prompts` packs prompts into varlen batches of about `token_budget`
tokens (like an engine step with several prefills, in a scratch KV pool) and stops each forward
once the last MoE layer has run. Routing is causal, so packing does not change any decision.
`dense_weights` makes the model's not yet quantized `LoadedLinear`s hold one dense part during
training's pass: a `LoadedLinear` dequantizes on every call, and the gguf package's numpy
dequantizer took ~20 s per pass over SmolLM2's layers; 4-bit blocks are expanded from their
exact int4 groups in torch instead.

Scope: `forward_prompts`, `dense_weights`.

Non-goals: serving (the engine), what is recorded (the caller reads the `StepContext`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from agentkit.plugins.anymoe.routing import StepContext

__all__ = ["dense_weights", "forward_prompts"]


class _Done(Exception):
    """Raised after the last MoE layer: the rest of the forward is not needed."""


def _dense(lin: Any, dtype: torch.dtype) -> torch.Tensor:
    from agentkit.engine.quant import INT4_EXACT_TYPES, QuantTensor

    ws = []
    for p in lin.parts:
        if isinstance(p, QuantTensor) and p.qtype in INT4_EXACT_TYPES:
            q, scale, zero = p.int4_groups()
            n, k = p.shape
            w = (q.view(n, k // 32, 32).float() - 8) * scale[..., None] + zero[..., None]
            ws.append(w.reshape(n, k).to(dtype))
        elif isinstance(p, QuantTensor):
            ws.append(p.dequantize(dtype))
        else:
            ws.append(p.to(dtype))
    return ws[0] if len(ws) == 1 else torch.cat(ws)


@contextmanager
def dense_weights(modules: list[Any], dtype: torch.dtype) -> Iterator[None]:
    """Within the block, every `LoadedLinear` under `modules` holds one dense part (restored after)."""
    from agentkit.engine.models.linear import LoadedLinear

    linears = [m for mod in modules for m in mod.modules() if isinstance(m, LoadedLinear)]
    saved = [lin.parts for lin in linears]
    try:
        for lin in linears:
            lin.parts = [_dense(lin, dtype)]
        yield
    finally:
        for lin, parts in zip(linears, saved):
            lin.parts = parts


def _batches(seqs: list[list[int]], budget: int) -> list[list[int]]:
    out: list[list[int]] = [[]]
    used = 0
    for i, s in enumerate(seqs):
        if out[-1] and used + len(s) > budget:
            out.append([])
            used = 0
        out[-1].append(i)
        used += len(s)
    return out


@torch.inference_mode()
def forward_prompts(model: Any, ctx: StepContext, seqs: list[list[int]], last_layer: int,
                    on_batch: Callable[[list[int], list[tuple[int, int]]], None], token_budget: int = 512,
                    progress: str | None = None) -> None:
    """Run `seqs` up to layer `last_layer`; after each packed forward call `on_batch(indices, spans)`
    (the prompts' indices and their `[begin, end)` rows). Statistics are not counted meanwhile."""
    from tqdm.auto import tqdm

    from agentkit.engine.kv_cache import KVPool
    from agentkit.engine.models.llama import AttnMeta, PrefillSlice

    dev, bs = model.device, 32
    counting = ctx.counting
    ctx.counting, ctx.stop_after, ctx.stop_signal = False, last_layer, _Done
    try:
        for batch in tqdm(_batches(seqs, token_budget), desc=progress, disable=progress is None):
            ids: list[int] = []
            slots: list[int] = []
            prefills = []
            block = 0
            for i in batch:
                n, nb = len(seqs[i]), -(-len(seqs[i]) // bs)
                prefills.append(PrefillSlice(len(ids), len(ids) + n, 0, torch.arange(block, block + nb, device=dev)))
                ids += seqs[i]
                slots += range(block * bs, block * bs + n)
                block += nb
            pool = KVPool(model.kv_spec, block, bs)
            meta = AttnMeta(slots=torch.tensor(slots, device=dev), prefills=prefills)
            positions = torch.cat([torch.arange(p.end - p.begin) for p in prefills]).to(dev)
            try:
                model.forward_batch(torch.tensor(ids, device=dev), positions, pool, meta,
                                    torch.tensor([len(ids) - 1], device=dev))
            except _Done:
                pass
            on_batch(batch, [(p.begin, p.end) for p in prefills])
    finally:
        ctx.counting, ctx.stop_after = counting, None
