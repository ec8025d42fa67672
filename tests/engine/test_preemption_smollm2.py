"""Preemption on the real SmolLM2 GGUF: many concurrent requests on a tiny KV pool give the tokens
(and, within float noise, the logprobs) of each request sent alone (reliability defect D3)."""

from __future__ import annotations

import threading

import pytest

from agentkit import ChatCompletionRequest, Runner, Which

pytestmark = pytest.mark.slow

BASE = "Here is a context paragraph about rivers, mountains, cities, trains and markets. " * 4
PROMPTS = [BASE + f"Question {i}: name {i % 5 + 2} animals that live near a {['river', 'lake', 'forest'][i % 3]}."
           for i in range(6)]


def greedy(runner: Runner, prompt: str) -> list[tuple[int, float]]:
    out = runner.send_chat_completion_request(ChatCompletionRequest(
        model="default", messages=[{"role": "user", "content": prompt}], max_tokens=32, ignore_eos=True, logprobs=True))
    return [(c.top_logprobs[0].token, c.logprob) for c in out.choices[0].logprobs.content]


def test_preempted_requests_match_alone(smollm2):
    d, f = smollm2
    # 8 blocks of 32 tokens; each request needs 4-5 (about 110 prompt + 32 generated tokens)
    with Runner(Which.GGUF(d, f, None), progress=False, pa_ctxt_len=256, prefix_cache_n=0) as r:
        alone = [greedy(r, p) for p in PROMPTS]
        got: list[list[tuple[int, float]] | None] = [None] * len(PROMPTS)

        def one(i: int) -> None:
            got[i] = greedy(r, PROMPTS[i])

        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        scheduler = r.served_model().engine.scheduler
    assert [[t for t, _ in g] for g in got] == [[t for t, _ in a] for a in alone]
    drift = max(abs(x[1] - y[1]) for g, a in zip(got, alone) for x, y in zip(g, a))
    assert drift < 1e-3, drift  # recomputing the generated tokens instead drifts by ~0.01-0.1
    assert scheduler.num_preemptions > 0 and scheduler.swap.num_swapped_out > 0
    assert scheduler.swap.used_bytes == 0
