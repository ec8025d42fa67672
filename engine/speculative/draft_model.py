"""Draft-model proposer: a small model of the same vocabulary drafts greedily, the target verifies.

Scope: `DraftModelProposer` (mistral.rs's legacy `Runner(which_draft=..., speculative_gamma=k)`)
and `check_same_vocabulary`. The draft runs on its own native runner and KV pool; each target
sequence has a shadow sequence there. A proposal first brings the shadow up to the target's
tokens (only the positions after the longest common prefix are recomputed, so rejected drafts
are rolled back by overwriting), then drafts greedily one token per draft forward. Greedy drafts
are deterministic, so the acceptance rule treats them as point masses: exact for greedy and
sampled requests. `token_cost_s` (the measured seconds per drafted token) lets the adaptive
controller weigh the draft's cost. When the draft pool is full, the least recently used shadows
are dropped (they are recomputed if their sequence drafts again).

Non-goals: sampling drafts from the draft distribution, batching draft forwards across
sequences, draft models on the transformers fallback runner.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import torch

from agentkit.engine.block_manager import BlockManager
from agentkit.engine.model_runner import BatchItem, ModelRunner
from agentkit.engine.params import SamplingParams
from agentkit.engine.sequence import EngineRequest, Sequence
from agentkit.engine.speculative.protocol import Draft, DraftContext, DraftTarget
from agentkit.errors import ConfigError

__all__ = ["DraftModelProposer", "check_same_vocabulary"]


def check_same_vocabulary(target: Any, draft: Any, target_name: str = "the target model") -> None:
    """Raise ConfigError unless the two tokenizers map every token id to the same string."""
    t, d = target.token_strings(), draft.token_strings()
    if len(t) != len(d):
        raise ConfigError(f"which_draft has a vocabulary of {len(d)} tokens but {target_name} has {len(t)}: "
                          "a draft model must share the target's tokenizer (use a smaller model of the same family)")
    for i, (a, b) in enumerate(zip(t, d)):
        if a != b:
            raise ConfigError(f"which_draft's tokenizer differs from {target_name}'s at token {i} ({b!r} vs {a!r}): "
                              "a draft model must share the target's tokenizer (use a smaller model of the same family)")


class DraftModelProposer:
    """Greedy drafts from a smaller model of the same vocabulary."""

    def __init__(self, target: DraftTarget, runner: ModelRunner, tokenizer: Any, gamma: int = 32) -> None:
        check_same_vocabulary(target.tokenizer, tokenizer, repr(target.model_id))
        if runner.kind != "native":
            raise ConfigError("which_draft must be an architecture agentkit runs natively (llama, mistral, qwen2, "
                              f"qwen3); this one runs on the {runner.kind} fallback")
        if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
            raise ConfigError(f"speculative_gamma must be an int >= 1, got {gamma!r}")
        self.runner = runner
        self.vocab = target.vocab_size
        self.max_draft = gamma
        self.blocks = BlockManager(runner.num_blocks, runner.block_size, prefix_cache_n=0)
        self._shadows: OrderedDict[int, Sequence] = OrderedDict()
        self.token_cost_s = 0.0

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        ids = list(ctx.token_ids)
        sh = self._shadow(ctx, ids)
        if sh is None:
            return Draft([])
        t0 = time.perf_counter()
        out: list[int] = []
        with torch.inference_mode():
            for _ in range(k):
                start = sh.num_computed
                logits = self.runner.execute([BatchItem(sh, start, sh.num_tokens - start, True)])
                sh.num_computed = sh.num_tokens
                tok = int(logits[-1, : self.vocab].argmax())
                out.append(tok)
                sh.token_ids.append(tok)
        if out:
            per_token = (time.perf_counter() - t0) / len(out)
            self.token_cost_s = per_token if not self.token_cost_s else 0.8 * self.token_cost_s + 0.2 * per_token
        return Draft(out)

    def _shadow(self, ctx: DraftContext, ids: list[int]) -> Sequence | None:
        """The draft-side sequence of `ctx`, holding `ids` with KV valid for their common prefix
        with what it held, and blocks for `len(ids) + max_draft` positions (None: no room)."""
        sh = self._shadows.pop(ctx.seq_id, None)
        if sh is not None:
            common = 0
            limit = min(sh.num_computed, len(ids))
            old = sh.token_ids
            while common < limit and old[common] == ids[common]:
                common += 1
            sh.token_ids = ids
            sh.num_computed = min(common, len(ids) - 1)
        else:
            sh = Sequence(request=EngineRequest(f"draft-{ctx.seq_id}", ids, SamplingParams()), index=0,
                          token_ids=ids, num_prompt=ctx.num_prompt, max_tokens=1)
        self._shadows[ctx.seq_id] = sh
        need = len(ids) + self.max_draft
        while not self.blocks.reserve(sh, need):
            victim = next((sid for sid in self._shadows if sid != ctx.seq_id), None)  # least recently used
            if victim is None:
                self._drop(ctx.seq_id)
                return None
            self._drop(victim)
        return sh

    def _drop(self, seq_id: int) -> None:
        sh = self._shadows.pop(seq_id, None)
        if sh is not None:
            self.blocks.free_seq(sh, finished=False)
            sh.num_computed = 0

    def finished(self, ctx: DraftContext) -> None:
        self._drop(ctx.seq_id)
