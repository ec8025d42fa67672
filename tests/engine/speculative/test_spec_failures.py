"""A third-party proposer that fails inside its draft never hurts requests: they finish with the
plain greedy text, the engine keeps serving, and speculation switches itself off.

Every wait is bounded: a request that hangs (the engine thread died) fails the test within
`WAIT_S` instead of hanging the suite.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from agentkit import Runner, Which
from agentkit.engine.speculative.protocol import Draft
from agentkit.testing.speculation import PROMPTS, ProposerPlugin, Recorder, ask, texts

WAIT_S = 30.0  # the tiny model answers these in a few seconds


def send_bounded(runner: Runner, requests, timeout: float = WAIT_S) -> list:
    """Send every request from its own daemon thread; fail the test if any is still waiting after
    `timeout` seconds (a blocked daemon thread cannot hang the interpreter's exit)."""
    out: list = [None] * len(requests)

    def one(i: int) -> None:
        try:
            out[i] = runner.send_chat_completion_request(requests[i])
        except BaseException as exc:  # handed to the test below
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    if hung:
        pytest.fail(f"{hung} request(s) still waiting after {timeout:g} s; engine thread alive: "
                    f"{runner.served_model().backend.health().alive}")
    for x in out:
        if isinstance(x, BaseException):
            raise x
    return out


class RaisesWhileIterated(Recorder):
    """`propose` returns a generator that raises once the engine reads past two tokens."""

    max_draft = 5

    def propose(self, ctx, k):
        yield from ctx.token_ids[-2:]
        raise RuntimeError("boom inside the draft")


class ReturnsNone(Recorder):
    max_draft = 5

    def propose(self, ctx, k):
        return None


class BadCostProperty(Recorder):
    """Fails outside any one sequence's draft (the planner reads `token_cost_s`)."""

    max_draft = 5

    @property
    def token_cost_s(self) -> float:
        raise RuntimeError("boom in token_cost_s")

    def propose(self, ctx, k):
        return Draft(list(ctx.token_ids[-k:]))


class BadProbs(Recorder):
    """A sampling drafter whose distributions have the wrong vocabulary size."""

    max_draft = 5

    def propose(self, ctx, k):
        toks = list(ctx.token_ids[-k:])
        return Draft(toks, torch.full((len(toks), 7), 1 / 7))


FAILING = [RaisesWhileIterated, ReturnsNone, BadCostProperty, BadProbs]


@pytest.fixture(scope="module")
def plain(tiny_llama):
    requests = [ask(p) for p in PROMPTS[:4]]
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: Recorder())]) as r:
        return requests, texts(send_bounded(r, requests))


@pytest.mark.parametrize("proposer", FAILING, ids=lambda c: c.__name__)
def test_a_proposer_failing_inside_its_draft_never_hurts_requests(tiny_llama, plain, always_speculate, proposer,
                                                                 caplog):
    requests, expected = plain
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: proposer())]) as r:
        assert texts(send_bounded(r, requests)) == expected
        engine = r.served_model().engine
        spec = engine.speculation
        assert spec.stats.proposer_errors >= 1
        assert spec.disabled  # failures kept coming (or were not tied to one sequence): off for the engine
        assert texts(send_bounded(r, requests[:1])) == expected[:1]  # the engine keeps serving
        assert r.served_model().backend.health().alive
        assert all(b.ref_count == 0 for b in engine.blocks.blocks)  # no reserved draft slot leaked
    tracebacks = [rec for rec in caplog.records if "draft proposer" in rec.getMessage() and rec.exc_info]
    assert len(tracebacks) == 1  # logged once


def test_a_sequence_whose_draft_failed_decodes_plainly_while_others_speculate(tiny_llama, plain, always_speculate):
    requests, expected = plain

    class FailsOnFirstSequence(Recorder):
        max_draft = 4
        victim: int | None = None

        def propose(self, ctx, k):
            if self.victim is None:
                self.victim = ctx.seq_id
            if ctx.seq_id == self.victim:
                raise RuntimeError("only this sequence fails")
            return Draft(list(ctx.token_ids[-k:]))

    proposer = FailsOnFirstSequence()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[ProposerPlugin(lambda t: proposer)]) as r:
        assert texts(send_bounded(r, requests)) == expected
        spec = r.served_model().engine.speculation
        assert spec.stats.proposer_errors == 1 and not spec.disabled  # asked once, then left plain
        assert spec.stats.verify_steps > 0  # the other sequences kept speculating
