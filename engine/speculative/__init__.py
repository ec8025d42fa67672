"""Speculative decoding: a proposer drafts tokens, the target model verifies them in one batched
forward, and an exact acceptance rule keeps the output distribution that of plain decoding.

Scope (one concept per module, vLLM v1's spec_decode/ layout):
- `protocol`: the `DraftProposer` contract, `Draft`, `DraftContext`, `DraftTarget`.
- `acceptance`: the one acceptance rule (greedy argmax match; sampled min(1, p/q) with the
  residual normalize(max(0, p - q)) and a bonus token), applied after the request's transforms.
- `adaptive`: per-sequence draft length from observed acceptance and a measured step-cost model.
- `verify`: the engine-side controller: attach drafts to decode items, verify, roll back.
- `prompt_lookup`, `suffix_cache`, `draft_model`: the built-in proposers.

Non-goals: selecting a proposer for a Runner (agentkit.plugins.speculative, through the
`engine_draft_proposer` hook).
"""

from agentkit.engine.speculative.protocol import Draft, DraftContext, DraftProposer, DraftTarget

__all__ = ["Draft", "DraftContext", "DraftProposer", "DraftTarget"]
