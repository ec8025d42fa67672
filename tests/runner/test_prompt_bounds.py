"""Prompt text is bounded before tokenizing (defect D2) and empty prompts never reach the engine (D4)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from agentkit import ChatCompletionRequest, CompletionRequest, Runner, Which
from agentkit.chat.prompt_bounds import prompt_bound
from agentkit.errors import RequestError


@pytest.fixture(scope="module")
def runner(tiny_llama):
    r = Runner(Which.Plain(tiny_llama), progress=False)
    yield r
    r.shutdown()


def _chat(content: str, **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="default", messages=[{"role": "user", "content": content}], max_tokens=2, **kw)


def test_bound_is_context_times_longest_token_and_sound(runner):
    host = runner.served_model()
    bound = prompt_bound(host)
    longest = max(len(t) for t in host.tokenizer.hf.get_vocab())
    assert bound.longest_token_chars == longest and bound.max_chars == host.max_seq_len * longest
    # any text longer than the bound needs more tokens than the context holds
    for text in ("x" * (bound.max_chars + 1), ("The weather in Paris. " * bound.max_chars)[: bound.max_chars + 1]):
        assert len(host.tokenizer.encode(text)) > host.max_seq_len


def test_too_long_prompts_rejected_before_tokenizing(runner, monkeypatch):
    host = runner.served_model()
    bound = prompt_bound(host)
    encode = host.tokenizer.encode

    def guarded(text, add_special_tokens=False):
        assert len(text) <= bound.max_chars, "tokenizer called with an over-long text"
        return encode(text, add_special_tokens=add_special_tokens)

    monkeypatch.setattr(host.tokenizer, "encode", guarded)
    big = "word " * (bound.max_chars // 5 + 1)
    with pytest.raises(RequestError, match=f"at most {bound.max_chars} characters") as info:
        runner.send_chat_completion_request(_chat(big))
    assert f"context {host.max_seq_len} tokens" in str(info.value)
    with pytest.raises(RequestError, match="the completion prompt is .* characters, more than"):
        runner.send_completion_request(CompletionRequest(prompt=big, model="default", max_tokens=2))
    # a template that makes a short message long is caught after rendering
    host_template = host.template
    try:
        from agentkit.engine.chat_template import ChatTemplate

        host.template = ChatTemplate("{% for m in messages %}{{ m.content * 100000 }}{% endfor %}")
        with pytest.raises(RequestError, match="the rendered chat prompt is"):
            runner.send_chat_completion_request(_chat("abc"))
    finally:
        host.template = host_template
    # with truncate_sequence the text is cut, not rejected, and the reply still comes
    out = runner.send_completion_request(CompletionRequest(prompt=big, model="default", max_tokens=2,
                                                           truncate_sequence=True))
    assert out.usage.prompt_tokens < host.max_seq_len
    out = runner.send_chat_completion_request(_chat(big, truncate_sequence=True))
    assert out.usage.prompt_tokens < host.max_seq_len
    # even with truncation, messages beyond the template's output limit are refused before rendering
    with pytest.raises(RequestError, match="output limit of 8388608 characters"):
        runner.send_chat_completion_request(_chat("x" * 9_000_000, truncate_sequence=True))


def test_empty_prompts_rejected_before_the_engine(runner, tiny_llama, caplog):
    with caplog.at_level(logging.ERROR):
        with pytest.raises(RequestError, match="the completion prompt is empty"):
            runner.send_completion_request(CompletionRequest(prompt="", model="default", max_tokens=2))
        with Runner(Which.Plain(tiny_llama), chat_template="{{ '' }}", progress=False) as r:
            with pytest.raises(RequestError, match="rendered by the chat template is empty"):
                r.send_chat_completion_request(_chat("hi"))
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert runner.send_completion_request(CompletionRequest(prompt="a", model="default", max_tokens=2)).choices


_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from agentkit import ChatCompletionRequest, RequestError, Runner, Which
    r = Runner(Which.Plain(sys.argv[1]), progress=False)
    t = time.perf_counter()
    try:
        r.send_chat_completion_request(ChatCompletionRequest(model="default", messages="word " * 20_000_000, max_tokens=2))
    except Exception as e:
        print("RAISED", "RequestError" if isinstance(e, RequestError) else type(e).__name__, e)
    print("SECONDS", round(time.perf_counter() - t, 2))
    out = r.send_chat_completion_request(ChatCompletionRequest(model="default", messages="hi", max_tokens=2))
    print("ALIVE", out.usage.prompt_tokens > 0)
    r.shutdown()
    """
)


def test_d2_100mb_message_under_a_memory_limit(tiny_llama):
    """The reproducer: a 100 MB message gets a clear error and the process keeps serving."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AGENTKIT_LOAD_PLUGINS": ""}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, tiny_llama], capture_output=True, text=True,
                              timeout=120, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("a 100 MB chat message did not get an answer within 120 s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "RAISED RequestError the chat messages hold 1000000" in out and "at most" in out, out[-3000:]
    assert "ALIVE True" in out, out[-3000:]
