"""Test helpers for speculative decoding: proposers that record, draft garbage or draft a known
continuation, a plugin that installs one, and request helpers.

Scope: `ProposerPlugin`, `Recorder`, `Garbage`, `Oracle`, `PROMPTS`, `ask`, `run_all`, `texts`,
`score_decode_and_verify`.
Non-goals: production proposers (agentkit.engine.speculative).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from agentkit import ChatCompletionRequest, Runner
from agentkit.engine.speculative.protocol import Draft, DraftContext
from agentkit.hookspecs import hookimpl

PROMPTS = [
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}} {"name": "get_weather", "arguments":',
    "abc abc abc abc abc abc abc abc",
    "What is the weather in Paris today? It is sunny and warm.",
    "Call the function get_weather with the city argument. Call the function",
    "one two three four five one two three four five one two",
]


def ask(text: str, n: int = 24, **kw: Any) -> ChatCompletionRequest:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("ignore_eos", True)
    return ChatCompletionRequest(messages=[{"role": "user", "content": text}], model="default", max_tokens=n, **kw)


def run_all(runner: Runner, requests: list[ChatCompletionRequest], concurrent: bool = True) -> list[Any]:
    """Send every request (from one thread each when `concurrent`); re-raise the first error."""
    out: list[Any] = [None] * len(requests)

    def one(i: int) -> None:
        try:
            out[i] = runner.send_chat_completion_request(requests[i])
        except BaseException as exc:  # handed to the caller below
            out[i] = exc

    if concurrent:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
    else:
        for i in range(len(requests)):
            one(i)
    for x in out:
        if isinstance(x, BaseException):
            raise x
    return out


def texts(responses: list[Any]) -> list[str]:
    return [r.choices[0].message.content for r in responses]


class ProposerPlugin:
    """A plugin whose `engine_draft_proposer` returns `factory(target)` (called before the built-in)."""

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        self.factory = factory
        self.proposer: Any = None

    @hookimpl
    def engine_draft_proposer(self, target, config):
        self.proposer = self.factory(target)
        return self.proposer


class Recorder:
    """Never drafts; records every finished sequence's final tokens (prompt + completion)."""

    max_draft = 1

    def __init__(self) -> None:
        self.finals: list[list[int]] = []

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        return Draft([])

    def finished(self, ctx: DraftContext) -> None:
        self.finals.append(list(ctx.token_ids))


class Garbage(Recorder):
    """Random tokens: nearly every draft is rejected."""

    max_draft = 6

    def __init__(self, vocab: int, seed: int = 0) -> None:
        super().__init__()
        self.vocab = vocab
        self.rng = random.Random(seed)

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        return Draft([self.rng.randrange(self.vocab) for _ in range(k)])


class Oracle(Recorder):
    """Proposes the continuation of the reference sequence the context is a prefix of; every
    second proposal has one token changed, so verify steps see both accepts and rejects."""

    max_draft = 7

    def __init__(self, references: list[list[int]], vocab: int) -> None:
        super().__init__()
        self.references = references
        self.vocab = vocab
        self.calls = 0

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        ids = list(ctx.token_ids)
        for ref in self.references:
            if len(ref) > len(ids) and ref[: len(ids)] == ids:
                out = list(ref[len(ids) : len(ids) + k])
                self.calls += 1
                if self.calls % 2 == 0 and len(out) > 1:
                    j = self.calls % len(out)
                    out[j] = (out[j] + 1) % self.vocab
                return Draft(out)
        return Draft([])


def score_decode_and_verify(engine: Any, ids: list[int], start: int, timeout: float = 300.0) -> tuple[Any, Any]:
    """Logits of `ids[start:]` scored two ways on `engine`'s thread, after prefilling `ids[:start]`:
    one plain decode step per position, and one verify step drafting `ids[start + 1:]`.

    Returns `(plain, verify)`, each `[len(ids) - start, vocab]`; the blocks are freed after.
    """
    import torch

    from agentkit.engine.model_runner import BatchItem
    from agentkit.engine.params import SamplingParams
    from agentkit.engine.sequence import EngineRequest, Sequence

    def run() -> tuple[Any, Any]:
        seq = Sequence(request=EngineRequest("x", ids, SamplingParams()), index=0, token_ids=list(ids),
                       num_prompt=len(ids), max_tokens=8)
        engine.blocks.allocate(seq, fresh_only=True)
        engine.blocks.reserve(seq, len(ids) + 8)
        runner = engine.runner
        runner.execute([BatchItem(seq, 0, start, False)])
        plain = torch.cat([runner.execute([BatchItem(seq, p, 1, True)]) for p in range(start, len(ids))])
        verify = runner.execute([BatchItem(seq, start, 1, True, tuple(ids[start + 1 :]))])
        engine.blocks.free_seq(seq, finished=False)
        return plain, verify

    return engine.call(run).result(timeout)
