"""A KV pool smaller than the model's context caps the context (with a warning) instead of cutting
generations silently; KV budget mistakes are refused before any weights load."""

from __future__ import annotations

import logging

import pytest

import agentkit.models.local
from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.errors import RequestError


def ask(content: str, max_tokens: int) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": content}], model="default",
                                 max_tokens=max_tokens, ignore_eos=True)


def test_small_pool_caps_the_context_with_a_warning(tiny_llama, caplog):
    with caplog.at_level(logging.WARNING, logger="agentkit"):
        r = Runner(Which.Plain(tiny_llama), progress=False, pa_ctxt_len=64)
    try:
        assert any("KV cache holds 64 tokens, less than the model's context of 512" in m for m in caplog.messages)
        assert r.max_sequence_length() == 64
        out = r.send_chat_completion_request(ask("Hi there", 200))
        assert out.choices[0].finish_reason == "length"
        assert out.usage.prompt_tokens + out.usage.completion_tokens == 64  # the whole pool, not less
        with pytest.raises(RequestError, match="greater than 64"):
            r.send_chat_completion_request(ask("word " * 80, 4))
    finally:
        r.shutdown()


def test_pool_as_large_as_the_context_gives_no_warning(tiny_llama, caplog):
    with caplog.at_level(logging.WARNING, logger="agentkit"):
        with Runner(Which.Plain(tiny_llama), progress=False, pa_ctxt_len=512) as r:
            assert r.max_sequence_length() == 512
    assert not any("KV cache holds" in m for m in caplog.messages)


@pytest.mark.parametrize("kwargs, match", [
    (dict(pa_ctxt_len=64, max_seq_len=128), "pa_ctxt_len=64 cannot hold one sequence of max_seq_len=128"),
    (dict(pa_ctxt_len=8), "pa_ctxt_len must be an integer >= the block size"),
    (dict(pa_gpu_mem_usage=1.5), "pa_gpu_mem_usage must be a fraction"),
    (dict(memory_goal="4 parsecs"), "memory_goal '4 parsecs' is not understood"),
    (dict(request_timeout_secs=0), "request_timeout_secs must be a positive number"),
], ids=["ctxt-below-max-seq-len", "below-one-block", "usage", "goal", "timeout"])
def test_budget_errors_come_before_the_weights_load(tiny_llama, monkeypatch, kwargs, match):
    def no_load(*a, **k):
        raise AssertionError("weights were loaded before the configuration was checked")

    monkeypatch.setattr(agentkit.models.local, "load_plain", no_load)
    with pytest.raises(ValueError, match=match):
        Runner(Which.Plain(tiny_llama), progress=False, **kwargs)


def test_explicit_max_seq_len_larger_than_a_memory_sized_pool_is_refused(tiny_llama):
    # 1 MB of KV at ~512 B per token: about 2048 tokens, less than max_seq_len=4096
    with pytest.raises(ValueError, match="max_seq_len=4096 is larger than the KV cache"):
        Runner(Which.Plain(tiny_llama), progress=False, pa_gpu_mem=1, max_seq_len=4096)
