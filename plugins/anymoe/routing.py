"""AnyMoE routing over the paged varlen engine: causal running-mean, top-1 per sequence.

mistral.rs routes a whole forward input: softmax of the gate logits, mean over the sequence
dimension, top-1. With its KV cache that mean covers the prompt at prefill and *only the new
token* at each decode step, and the result depends on how the prompt was split into chunks. Our
engine flattens several sequences, prefill chunks and decode tokens into one `[T, hidden]` batch,
reuses cached prefixes and preempts, so we route each token by the **running mean of the gate
distribution over its sequence so far** (positions 0..t), top-1:

- at the last prompt token this is exactly the reference's decision for the prompt (the mean over
  the whole prompt); decode tokens keep extending the same mean, so a sequence keeps its expert
  unless what it generates pulls the mean to another one;
- it is causal: a token's expert depends only on the tokens up to it, so the KV of a prefix is
  the same whatever follows. Identical prefixes therefore get identical KV and the prefix cache
  can never share KV between sequences routed differently; chunking, batching and preemption do
  not change routing either;
- the running sums are integers (probabilities in fixed point, 2^-24), so they are the same
  whatever the order of additions, kept per token slot in the KV pool's `aux` side channel
  (`agentkit.engine.kv_cache`): copied by swap, shared with prefix hits like K/V;
- speculative verify steps score a decode token and its drafts as consecutive rows: a row whose
  previous token is written by the row before it joins that row's segment (`_chain_drafts`), so
  each draft is routed as plain decoding would route it at that position. Rejected drafts need no
  rollback: their slots lie past the sequence's computed length and are rewritten before any read.

Scope: `StepContext` (per engine step: the rows' sequence segments and the slot holding each
segment's previous running sum, derived once per step from the attention metadata) and
`causal_route` (one layer's running sums and top-1 experts).

Non-goals: the expert computation and gate modules (`agentkit.plugins.anymoe.layer`), token-level
top-k routing (stateless, in the layer).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FIXED_ONE", "StepContext", "causal_route"]

FIXED_ONE = 1 << 24
"""Probability 1.0 in the fixed-point running sums."""


class StepContext:
    """What the MoE layers of one model need to know about the current engine step.

    A forward pre-hook on each MoE decoder layer calls `capture(pool, meta)` with the arguments the
    layer receives; the derived indices are computed once per step (the same `meta` object).
    `trainer`, when set, is called by each MoE layer with its input before it routes (gate
    training, `agentkit.plugins.anymoe.training`); while not `counting`, each layer keeps its routes and probabilities in
    `last_routes`/`last_probs`, and the layer `stop_after` then raises `stop_signal` (the rest of
    the forward is not needed).
    """

    def __init__(self) -> None:
        self.pool: Any = None
        self.meta: Any = None
        self.slots: torch.Tensor | None = None
        self.seg_first: torch.Tensor | None = None  # [T] row of the first token of each row's segment
        self.prev_slot: torch.Tensor | None = None  # [T] slot of the token before the segment (0 if none)
        self.has_prev: torch.Tensor | None = None  # [T, 1] int64 1/0
        self.singles = False  # every segment is one token (a decode-only step)
        self.trainer: Any = None  # trainer(moe_layer, x): fits that layer's gate on its input, before it routes
        self.stop_after: int | None = None  # while not counting: raise `stop_signal` after this layer
        self.stop_signal: type[Exception] = RuntimeError
        self.last_routes: dict[int, torch.Tensor] = {}
        self.last_probs: dict[int, torch.Tensor] = {}
        self.counting = True

    def capture(self, pool: Any, meta: Any) -> None:
        """Derive the step's segment indices from the attention metadata (once per step)."""
        if meta is self.meta and pool is self.pool:
            return
        self.pool, self.meta = pool, meta
        slots = meta.slots
        n, dev = int(slots.shape[0]), slots.device
        bs = pool.block_size
        seg_first = torch.arange(n, device=dev)
        prev_slot = torch.zeros(n, dtype=torch.long, device=dev)
        has_prev = torch.zeros(n, 1, dtype=torch.long, device=dev)
        groups = meta.decode_groups
        if groups is None and meta.decode_rows is not None:
            groups = [(meta.decode_rows, meta.decode_blocks, meta.decode_mask)]
        for rows, blocks, mask in groups or ():
            lens = mask.reshape(rows.shape[0], -1).sum(-1) if mask is not None \
                else torch.full_like(rows, blocks.shape[1] * bs)
            before = (lens - 2).clamp(min=0)  # position of the token before the decode token
            blk = blocks.gather(1, (before // bs).unsqueeze(1)).squeeze(1)
            prev_slot[rows] = blk * bs + before % bs
            has_prev[rows, 0] = (lens >= 2).long()
        self.singles = True
        for p in meta.prefills:
            if p.end - p.begin > 1:
                self.singles = False
                seg_first[p.begin:p.end] = p.begin
            if p.start > 0:
                before = p.start - 1
                prev_slot[p.begin:p.end] = int(p.blocks[before // bs]) * bs + before % bs
                has_prev[p.begin:p.end, 0] = 1
        if meta.decode_groups is not None:  # a verify step: draft rows follow their decode row
            self.singles = False
            seg_first, prev_slot, has_prev = _chain_drafts(slots, seg_first, prev_slot, has_prev)
        self.slots, self.seg_first, self.prev_slot, self.has_prev = slots, seg_first, prev_slot, has_prev


def _chain_drafts(slots: torch.Tensor, seg_first: torch.Tensor, prev_slot: torch.Tensor,
                  has_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Join each row whose previous token is written by the row just before it (a draft row after
    its decode row or the draft before it) to that row's segment, so its running sum is the
    segment's cumulative sum instead of a read of a slot this step has not written yet; on device,
    no host sync."""
    n = slots.shape[0]
    rows = torch.arange(n, device=slots.device)
    start = seg_first == rows
    start[1:] &= ~((prev_slot[1:] == slots[:-1]) & has_prev[1:, 0].bool())
    first = torch.where(start, rows, torch.zeros_like(rows)).cummax(0).values
    return first, prev_slot.index_select(0, first), has_prev.index_select(0, first)


def causal_route(ctx: StepContext, aux_layer: int, probs: torch.Tensor) -> torch.Tensor:
    """Top-1 expert per row from the running mean of `probs` `[T, E]`; updates the pool's sums."""
    q = (probs * FIXED_ONE).to(torch.int64)  # truncation: deterministic, like rounding
    store = ctx.pool.aux[aux_layer]
    prev = store.index_select(0, ctx.prev_slot) * ctx.has_prev
    if ctx.singles:
        sums = q + prev
    else:
        cs = q.cumsum(0)
        sums = cs - cs.index_select(0, ctx.seg_first) + q.index_select(0, ctx.seg_first) + prev
    store.index_copy_(0, ctx.slots, sums)
    return sums.argmax(-1)
