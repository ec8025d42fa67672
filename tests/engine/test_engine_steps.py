"""Engine behaviour counted in steps, on a hand-driven engine: admission as soon as a slot frees,
bit-exact resume after a preemption (swap space), and request deadlines."""

from __future__ import annotations

import itertools

import pytest

from agentkit.api.which import Which
from agentkit.engine.config import EngineConfig
from agentkit.engine.sampling import SamplingParams
from agentkit.engine.sequence import EngineRequest
from agentkit.models.local import load_unserved

_ids = itertools.count()


def hand_driven(model_dir: str, **cfg):
    """A host whose engine has no thread: the test calls `engine.step()`."""
    return load_unserved(Which.Plain(model_dir), engine_config=EngineConfig(**cfg), token=None, chat_template=None,
                 jinja_explicit=None, device=None, progress=False, weight_mode="auto")


def submit(host, max_tokens: int, text: str = "What is the weather in Paris today?", **kw) -> EngineRequest:
    req = EngineRequest(f"s{next(_ids)}", host.tokenizer.encode(text),
                        SamplingParams(max_tokens=max_tokens, ignore_eos=True, logprobs=True), **kw)
    return host.engine.submit(req)


def drain(req: EngineRequest) -> list:
    events = []
    while not req.outputs.empty():
        events.append(req.outputs.get_nowait())
    return events


def run_alone(host, max_tokens: int, text: str = "What is the weather in Paris today?") -> list[float]:
    req = submit(host, max_tokens, text)
    logprobs: list[float] = []
    for _ in range(max_tokens + 5):
        host.engine.step()
        for ev in drain(req):
            logprobs += [x.logprob for d in ev.deltas for x in d.samples]
    assert len(logprobs) == max_tokens
    return logprobs


def test_waiting_request_starts_in_the_step_after_a_slot_frees(tiny_llama):
    host = hand_driven(tiny_llama, max_seqs=2)
    try:
        a, b, c = submit(host, 3), submit(host, 10), submit(host, 3)
        first_token_step: dict[str, int] = {}
        finish_step: dict[str, int] = {}
        for step in range(1, 20):
            host.engine.step()
            for req in (a, b, c):
                for ev in drain(req):
                    if any(d.token_ids for d in ev.deltas):
                        first_token_step.setdefault(req.request_id, step)
                    if ev.finished:
                        finish_step[req.request_id] = step
        assert first_token_step[a.request_id] == first_token_step[b.request_id] == 1
        assert finish_step[a.request_id] == 3  # prefill token + 2 decodes
        # c waited behind the full batch and runs its prefill in the very next step
        assert first_token_step[c.request_id] == finish_step[a.request_id] + 1
        assert finish_step[b.request_id] == 10
    finally:
        host.shutdown()


@pytest.mark.parametrize("swap, paged", [(True, None), (False, None), (True, False)],
                         ids=["swap", "recompute", "swap-transformers-runner"])
def test_preempted_sequence_resumes_bit_exact(tiny_llama, swap, paged):
    """Preempt a lone sequence mid-decode: with its KV swapped out and back, every later logprob is
    bit-identical to an uninterrupted run; recomputing the generated tokens as a prefill is not."""
    n = 24
    host = hand_driven(tiny_llama, prefix_cache_n=0, paged_attn=paged)
    assert host.runner_kind == ("transformers" if paged is False else "native")
    try:
        expected = run_alone(host, n)
        engine = host.engine
        if not swap:
            engine.scheduler.swap.limit_bytes = 0
        req = submit(host, n)
        got: list[float] = []
        for step in range(n + 10):
            if step == 12:
                seq = req.seqs[0]
                engine.scheduler.preempt(seq)
                assert (seq.swapped is not None) == swap and seq.num_computed == 0
                if swap:
                    assert seq.swapped.nbytes == engine.runner.saved_nbytes(seq.swapped.num_computed) > 0
                else:
                    assert engine.scheduler.swap.num_recomputed == 1
            engine.step()
            for ev in drain(req):
                got += [x.logprob for d in ev.deltas for x in d.samples]
        assert engine.scheduler.num_preemptions == 1
        assert engine.scheduler.swap.used_bytes == 0
        assert all(b.ref_count == 0 for b in engine.blocks.blocks)
        assert len(got) == n
        if swap:
            assert got == expected
        else:
            assert got[:12] == expected[:12] and got != expected
    finally:
        host.shutdown()


def test_swapped_sequence_cancelled_while_waiting_frees_its_copy(tiny_llama):
    host = hand_driven(tiny_llama, prefix_cache_n=0)
    try:
        req = submit(host, 20)
        for _ in range(4):
            host.engine.step()
        host.engine.scheduler.preempt(req.seqs[0])
        assert host.engine.scheduler.swap.used_bytes > 0
        req.cancel()
        host.engine.step()
        assert host.engine.scheduler.swap.used_bytes == 0 and req.seqs[0].swapped is None
        assert drain(req)[-1].finished and req.seqs[0].finish_reason == "canceled"
    finally:
        host.shutdown()


def test_deadline_ends_request_with_timeout_error(tiny_llama):
    """A step-driven clock (1 s per forward pass) makes the slow path deterministic."""
    host = hand_driven(tiny_llama, max_seqs=4, request_timeout_s=30.0)
    engine = host.engine
    clock = [0.0]
    engine.clock = lambda: clock[0]
    try:
        slow = submit(host, 500, timeout_s=5.0)
        default = submit(host, 500)  # the engine's default deadline: 30 s
        free = submit(host, 8, timeout_s=100.0)
        events: dict[str, list] = {r.request_id: [] for r in (slow, default, free)}
        for _ in range(40):
            engine.step()
            clock[0] += 1.0
            for r in (slow, default, free):
                events[r.request_id] += drain(r)
        tokens = sum(len(d.token_ids) for ev in events[slow.request_id] for d in ev.deltas)
        last = events[slow.request_id][-1]
        assert last.finished and last.timed_out and "timed out after 5 s" in last.error
        assert tokens == 5  # one token per step until the clock reached the deadline
        last = events[default.request_id][-1]
        assert last.timed_out and "after 30 s" in last.error
        last = events[free.request_id][-1]
        assert last.finished and last.error is None
        assert all(b.ref_count == 0 for b in engine.blocks.blocks) and not engine.num_active
    finally:
        host.shutdown()


def test_default_threads_leave_one_cpu_free(monkeypatch):
    import os

    from agentkit.engine import config

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert EngineConfig().resolved_threads() == 1
    assert EngineConfig(num_threads=2).resolved_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert config.default_threads() == 1
