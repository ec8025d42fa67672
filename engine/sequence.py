"""Sequence and EngineRequest: the per-request state the scheduler and model runner work on.

A request (`EngineRequest`) owns one `Sequence` per choice (`n`). A sequence holds token ids
(prompt + generated), how many of them already have KV in the cache (`num_computed`), its
sampling state and its detokenizer. The engine knows nothing about chat messages: this is
token ids in, token ids and text out. A request may carry a compiled `Grammar`
(agentkit.engine.grammar); each of its sequences then gets its own matcher at admission.
"""

from __future__ import annotations

import enum
import itertools
import queue
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.engine.params import SampleResult, SamplingParams

if TYPE_CHECKING:
    from agentkit.engine.grammar import Grammar, GrammarMatcher

_seq_counter = itertools.count()


class SequenceStatus(enum.Enum):
    WAITING = 0
    RUNNING = 1
    FINISHED = 2


@dataclass(slots=True)
class SeqDelta:
    """What one choice produced in one engine step."""

    index: int
    text: str
    token_ids: list[int]
    samples: list[SampleResult]
    finish_reason: str | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class RequestOutput:
    """One event on a request's output queue: the deltas of one step, or the final/error event."""

    request_id: str
    deltas: list[SeqDelta]
    finished: bool = False
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_time_s: float = 0.0
    completion_time_s: float = 0.0
    cached_tokens: int = 0
    timed_out: bool = False  # the error is the request's deadline
    drafted_tokens: int = 0  # speculative decoding: draft tokens verified, accepted, verify steps
    accepted_tokens: int = 0
    verify_steps: int = 0


@dataclass(eq=False)
class EngineRequest:
    """A tokenized request: `n` sequences sampled from one prompt with one set of params.

    `grammar` (from `agentkit.engine.grammar.compile_grammar` with this model's tokenizer)
    constrains every choice; each sequence gets its own matcher when the engine admits it.
    """

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    n: int = 1
    outputs: queue.Queue[RequestOutput] = field(default_factory=queue.Queue)
    arrival_time: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    seqs: list[Sequence] = field(default_factory=list)
    grammar: Grammar | None = None
    # Llama 3 / Mistral tool-call markers (<|python_tag|>, [TOOL_CALLS], [ARGS]) are special tokens
    keep_special_tokens: bool = False
    timeout_s: float | None = None  # None: the engine's request_timeout_s
    deadline: float | None = None  # set by Engine.submit (engine clock)

    def cancel(self) -> None:
        """Ask the engine to stop this request; safe from any thread."""
        self.cancelled = True


@dataclass(eq=False)
class Sequence:
    """One generated choice of a request."""

    request: EngineRequest
    index: int
    token_ids: list[int]
    num_prompt: int
    max_tokens: int
    generator: Any = None
    detok: Any = None  # IncrementalDetokenizer: text deltas and stop strings
    seq_id: int = field(default_factory=lambda: next(_seq_counter))
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed: int = 0
    kv: Any = None
    finish_reason: str | None = None
    stop_sequence: str | None = None
    cum_logprob: float = 0.0
    t_start: float | None = None
    t_first_token: float | None = None
    t_finish: float | None = None
    block_table: list[int] = field(default_factory=list)
    num_hashed_blocks: int = 0
    last_hash: bytes = b""
    num_cached_tokens: int = 0
    pending_samples: list[SampleResult] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)
    matcher: GrammarMatcher | None = None  # grammar state; advances only on sampled tokens
    swapped: Any = None  # agentkit.engine.swap.Swapped while preempted with its KV saved
    spec: Any = None  # agentkit.engine.speculative.adaptive.Acceptance once it may speculate

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def in_prefill(self) -> bool:
        """True while prompt tokens other than the last still lack KV (the last is fed at decode)."""
        return self.num_computed < self.num_tokens - 1
