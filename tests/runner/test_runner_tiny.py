"""End-to-end Runner tests on tiny random models (real weights, tokenizer and template)."""

from __future__ import annotations

import threading
import time

import pytest

from agentkit import ChatCompletionRequest, CompletionRequest, Runner, Which

ARCHS = ["llama", "qwen2", "mistral", "qwen3", "phi3", "gemma"]


def chat(content: str = "What is the weather in Paris?", **kw) -> ChatCompletionRequest:
    kw.setdefault("max_tokens", 12)
    return ChatCompletionRequest(messages=[{"role": "user", "content": content}], model="default", **kw)


@pytest.fixture(scope="module")
def runner(tiny_llama):
    r = Runner(Which.Plain(tiny_llama), max_seqs=16, progress=False)
    yield r
    r.shutdown()


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_stream_matches_nonstream(tiny_models, arch):
    with Runner(Which.Plain(tiny_models(arch)), progress=False) as r:
        resp = r.send_chat_completion_request(chat(ignore_eos=True))
        choice = resp.choices[0]
        assert choice.finish_reason == "length"
        assert resp.usage.completion_tokens == 12
        assert resp.usage.prompt_tokens > 5
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + 12
        assert resp.object == "chat.completion" and resp.model == tiny_models(arch)
        chunks = list(r.send_chat_completion_request(chat(ignore_eos=True, stream=True)))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == choice.message.content
        assert chunks[-1].choices[0].finish_reason == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
        assert all(c.usage is None for c in chunks[:-1])


def test_native_and_fallback_runners_agree(tiny_models):
    import torch

    from agentkit.engine.loading.loader import load_plain
    from agentkit.engine.model_runner import HFRunner, NativeRunner

    for arch in ["llama", "qwen2", "qwen3"]:
        loaded = load_plain(tiny_models(arch), dtype=torch.float32, progress=False)
        native = NativeRunner(loaded.config, dict(loaded.state_dict), torch.float32, torch.device("cpu"), 512)
        hf = HFRunner(loaded.config, dict(loaded.state_dict), torch.float32, torch.device("cpu"), 512)
        ids = list(range(5, 45))
        a, b = native.logits_for(ids), hf.logits_for(ids)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (arch, (a - b).abs().max())
        for r, full in ((native, a), (hf, b)):  # `last`: only the final rows (scoring a continuation)
            tail = r.logits_for(ids, last=3)
            assert tail.shape == (3, full.shape[1]) and torch.allclose(tail, full[-3:], atol=1e-4, rtol=1e-4)


def test_concurrent_threads_match_sequential(runner):
    prompts = [f"Question number {i}: what is {i} plus {i}?" for i in range(16)]
    sequential = [runner.send_chat_completion_request(chat(p, max_tokens=10)).choices[0].message.content
                  for p in prompts]
    results: list[str | None] = [None] * 16
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = runner.send_chat_completion_request(chat(prompts[i], max_tokens=10)).choices[0].message.content
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results == sequential


def test_equal_length_burst(runner):
    req = chat("same prompt", max_tokens=8)
    outs: list[str] = []
    threads = [threading.Thread(target=lambda: outs.append(
        runner.send_chat_completion_request(req).choices[0].message.content)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outs) == 8 and len(set(outs)) == 1


def test_stop_sequence_cuts_output(runner):
    full = runner.send_chat_completion_request(chat(max_tokens=20, ignore_eos=True)).choices[0].message.content
    assert len(full) > 6
    stop = full[3:5]
    choice = runner.send_chat_completion_request(chat(max_tokens=20, ignore_eos=True, stop_seqs=[stop])).choices[0]
    assert choice.finish_reason == "stop"
    assert choice.stop_sequence == stop
    assert choice.message.content == full[: full.index(stop)].lstrip()
    chunks = list(runner.send_chat_completion_request(chat(max_tokens=20, ignore_eos=True, stop_seqs=[stop],
                                                           stream=True)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content


def test_seeded_sampling_is_reproducible_and_n_choices(runner):
    req = chat(max_tokens=10, temperature=1.0, n_choices=3, ignore_eos=True, seed=1234)
    a = runner.send_chat_completion_request(req)
    b = runner.send_chat_completion_request(req)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert len({c.message.content for c in a.choices}) > 1
    assert a.usage.completion_tokens == 30


def test_logprobs(runner):
    resp = runner.send_chat_completion_request(chat(max_tokens=5, ignore_eos=True, logprobs=True, top_logprobs=3))
    content = resp.choices[0].logprobs.content
    assert len(content) == 5
    for lp in content:
        assert lp.logprob <= 0.0
        assert len(lp.top_logprobs) == 3
        assert lp.top_logprobs[0].logprob >= lp.top_logprobs[1].logprob
        assert abs(lp.top_logprobs[0].logprob - lp.logprob) < 1e-5  # greedy takes the best token


def test_breaking_out_of_a_stream_cancels(runner):
    engine = runner.served_model().engine
    stream = runner.send_chat_completion_request(chat(max_tokens=400, ignore_eos=True, stream=True))
    for _ in stream:
        break
    stream.close()
    deadline = time.monotonic() + 10
    while engine.num_active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.num_active == 0
    assert not engine.scheduler.running


def test_break_cancels_while_the_stream_is_still_referenced(runner):
    """`break` alone (no close, no del, the stream kept in a list) stops generation at once."""
    engine = runner.served_model().engine
    submitted = []
    submit = engine.submit
    engine.submit = lambda r: submitted.append(r) or submit(r)  # see the request the stream feeds on
    try:
        kept = [runner.send_chat_completion_request(chat(max_tokens=400, ignore_eos=True, stream=True))]
    finally:
        del engine.submit
    (req,) = submitted
    for i, _ in enumerate(kept[0]):
        if i == 2:
            at_break = req.seqs[0].num_generated
            break
    deadline = time.monotonic() + 10
    while engine.num_active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.num_active == 0 and req.seqs[0].finish_reason == "canceled"
    # at most the step running when the loop broke (a verify step emits up to 1 + max_draft tokens)
    per_step = 1 + (engine.speculation.proposer.max_draft if engine.speculation is not None else 0)
    assert req.seqs[0].num_generated - at_break <= 2 * per_step
    assert list(kept[0]) == []  # the stream is closed: iterating again yields nothing


def test_request_deadline_raises_timeout_error(runner):
    from agentkit import RequestTimeoutError

    # a deadline already passed when the engine first looks at the request: deterministic
    with pytest.raises(RequestTimeoutError, match="timed out after 1e-09 s"):
        runner.send_chat_completion_request(chat(max_tokens=50, timeout_secs=1e-9))
    with pytest.raises(RequestTimeoutError):
        list(runner.send_chat_completion_request(chat(max_tokens=50, timeout_secs=1e-9, stream=True)))
    with pytest.raises(RequestTimeoutError):
        runner.send_completion_request(CompletionRequest(prompt="Hello", model="default", max_tokens=5,
                                                         timeout_secs=1e-9))
    assert runner.send_chat_completion_request(chat(max_tokens=4, timeout_secs=600)).usage.completion_tokens > 0
    with pytest.raises(ValueError, match="timeout_secs"):
        chat(timeout_secs=0)


def test_completion_request(runner):
    base = CompletionRequest(prompt="The quick brown fox", model="default", max_tokens=6, ignore_eos=True)
    resp = runner.send_completion_request(base)
    assert resp.object == "text_completion" and len(resp.choices) == 1
    text = resp.choices[0].text
    echo = runner.send_completion_request(
        CompletionRequest(prompt="The quick brown fox", model="default", max_tokens=6, ignore_eos=True,
                          echo_prompt=True, suffix="<END>"))
    assert echo.choices[0].text == "The quick brown fox" + text + "<END>"
    best = runner.send_completion_request(
        CompletionRequest(prompt="The quick brown fox", model="default", max_tokens=6, n_choices=3, best_of=2,
                          temperature=1.0, ignore_eos=True))
    assert len(best.choices) == 2


def test_tokenizer_methods(runner, tiny_llama):
    ids = runner.tokenize_text("Hello, world!", False, None)
    assert runner.detokenize_text(ids, True) == "Hello, world!"
    assert runner.max_sequence_length() == 512
    assert runner.list_models() == [tiny_llama]
    assert runner.get_default_model_id() == tiny_llama


def test_bad_inputs_then_engine_still_serves(runner):
    with pytest.raises(TypeError):
        ChatCompletionRequest(messages=({"role": "user", "content": "x"},), model="default")
    with pytest.raises(ValueError, match="grammar"):
        runner.send_chat_completion_request(chat(grammar="a+", grammar_type="bogus"))
    with pytest.raises(ValueError, match="truncate_sequence"):
        runner.send_chat_completion_request(chat("word " * 600))
    with pytest.raises(ValueError, match="not found"):
        runner.send_chat_completion_request(chat(), model_id="no-such-model")
    with pytest.raises(ValueError, match="not found"):
        runner.set_default_model_id("no-such-model")
    with pytest.raises(ValueError, match="logit_bias"):
        runner.send_chat_completion_request(chat(logit_bias={10**6: 1.0}))
    truncated = runner.send_chat_completion_request(chat("word " * 600, truncate_sequence=True, max_tokens=4))
    assert truncated.usage.prompt_tokens + 4 <= 512
    assert runner.send_chat_completion_request(chat(max_tokens=3, ignore_eos=True)).usage.completion_tokens == 3


def test_bad_token_source(tiny_llama):
    with pytest.raises(ValueError, match="Invalid token source format"):
        Runner(Which.Plain(tiny_llama), token_source="bogus:xyz", progress=False)


def test_missing_model_fails_fast(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="no-such-org/no-such-model"):
        Runner(Which.Plain("no-such-org/no-such-model"), progress=False)
    with pytest.raises(ValueError):
        Runner(Which.Plain(str(tmp_path / "missing")), progress=False)
    assert time.monotonic() - t0 < 5


def test_async_api(runner):
    import asyncio

    async def main():
        resp = await runner.asend_chat_completion_request(chat(max_tokens=6, ignore_eos=True))
        stream = await runner.asend_chat_completion_request(chat(max_tokens=6, ignore_eos=True, stream=True))
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        both = await asyncio.gather(*[runner.asend_chat_completion_request(chat(max_tokens=6, ignore_eos=True))
                                      for _ in range(4)])
        return resp, text, both

    resp, text, both = asyncio.run(main())
    assert text == resp.choices[0].message.content
    assert all(b.choices[0].message.content == text for b in both)


def test_in_situ_quant_int8_and_int4(tiny_llama, runner):
    ref = runner.send_chat_completion_request(chat(max_tokens=6, ignore_eos=True, logprobs=True))
    for isq, kind in [("Q8_0", "int8"), ("q4k", "int4"), ("4", "int4")]:
        with Runner(Which.Plain(tiny_llama), in_situ_quant=isq, progress=False) as r:
            model = r.served_model().engine.runner.model
            assert model.layers[0].mlp.gate_up.kind == kind
            resp = r.send_chat_completion_request(chat(max_tokens=6, ignore_eos=True, logprobs=True))
            assert resp.usage.completion_tokens == 6
            # quantized logprobs stay close to the fp32 model's for the first token
            assert abs(resp.choices[0].logprobs.content[0].logprob - ref.choices[0].logprobs.content[0].logprob) < 0.5
    with pytest.raises(ValueError, match="unknown in_situ_quant"):
        Runner(Which.Plain(tiny_llama), in_situ_quant="Q9_9", progress=False)
