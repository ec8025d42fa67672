"""The proposer contract: what a speculative-decoding proposer is given and what it returns.

Scope: `DraftProposer` (the protocol a proposer implements: prompt lookup, a suffix cache, a draft
model, or a third-party plugin's), `DraftContext` (the sequence it drafts for), `Draft` (draft
tokens and, for a sampling drafter, its distributions) and `DraftTarget` (the engine-side facts of
the loaded model that `engine_draft_proposer` receives to build a proposer).

Non-goals: choosing a proposer (the built-in speculative plugin), verifying drafts
(`agentkit.engine.speculative.verify`) and the acceptance rule (`.acceptance`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from agentkit.engine.model_runner import ModelRunner
    from agentkit.engine.tokenizer import Tokenizer

__all__ = ["Draft", "DraftContext", "DraftProposer", "DraftTarget"]


@dataclass(slots=True)
class DraftContext:
    """The sequence a draft is for: a stable id (per generated choice), its token ids (prompt and
    generated so far, read-only) and how many of them are the prompt."""

    seq_id: int
    token_ids: Sequence[int]
    num_prompt: int


@dataclass(slots=True)
class Draft:
    """Up to k proposed tokens. `probs` ([len(tokens), V], rows summing to 1) is the distribution
    each token was sampled from; None means the tokens were chosen deterministically (n-gram
    lookup, a greedy draft model): the acceptance rule then treats each as a point mass."""

    tokens: list[int]
    probs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.probs is not None and (self.probs.dim() != 2 or self.probs.shape[0] != len(self.tokens)):
            raise ValueError(f"Draft.probs must be [len(tokens)={len(self.tokens)}, vocab], "
                             f"got {tuple(self.probs.shape)}")


@runtime_checkable
class DraftProposer(Protocol):
    """Proposes draft tokens to follow a sequence; the engine verifies them against the target.

    Called on the engine thread only. A proposer may return fewer than `k` tokens, or none (the
    step is then a plain decode step); wrong drafts cost time, never correctness. `finished` is
    called once when a sequence ends (free per-sequence state; a cache may learn its tokens).
    `max_draft` bounds `k` (the engine's adaptive controller picks `k` per step up to it).
    """

    max_draft: int

    def propose(self, ctx: DraftContext, k: int) -> Draft | list[int]:
        """Up to `k` draft tokens to follow `ctx.token_ids` (a plain list means deterministic)."""
        ...

    def finished(self, ctx: DraftContext) -> None:
        """The sequence ended (its final `token_ids` hold only accepted tokens)."""
        ...


@dataclass(frozen=True)
class DraftTarget:
    """What a proposer may need from the loaded (target) model, given to `engine_draft_proposer`.

    `runner` is the engine's model runner (KV already sized), `tokenizer` its tokenizer.
    `load_model(which)` loads another model (a draft) with the same engine machinery and returns
    its `(runner, tokenizer)`; its KV pool holds `max_seq_len` tokens per sequence.
    """

    model_id: str
    runner: ModelRunner
    tokenizer: Tokenizer
    vocab_size: int
    max_seq_len: int
    max_seqs: int
    device: Any
    load_model: Callable[[Any], tuple[ModelRunner, Tokenizer]]
