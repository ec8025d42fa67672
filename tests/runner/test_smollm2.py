"""End-to-end on the real SmolLM2-135M-Instruct Q4_1 GGUF (slow: one model load per module)."""

from __future__ import annotations

import pytest

from agentkit import ChatCompletionRequest, CompletionRequest, Runner, Which

pytestmark = pytest.mark.slow

A4 = {
    "The quick brown fox jumps over the lazy dog.": [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
    "Hello, world! 1234 café — naïve résumé, <|im_start|> tokens.": [
        19556, 28, 905, 17, 216, 33, 34, 35, 36, 37366, 1841, 15486, 46494, 412, 2756, 5422, 2756, 28, 216, 1,
        17837, 30],
}
P1_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712,
          8182, 2, 198, 1, 4093, 198, 19161, 253, 1890, 8216, 563, 260, 3426, 30, 2, 198, 1, 520, 9531, 198]


@pytest.fixture(scope="module")
def runner(smollm2):
    d, f = smollm2
    r = Runner(Which.GGUF(d, f, None), progress=False)
    yield r
    r.shutdown()


def ask(q: str, **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=[{"role": "user", "content": q}], model="default", **kw)


def test_chat_answers(runner):
    resp = runner.send_chat_completion_request(
        ask("What is the capital of France? Answer in one word.", max_tokens=16, temperature=0.0))
    assert "Paris" in resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"


def test_prompt_tokens_match_reference(runner):
    resp = runner.send_chat_completion_request(ask("Write a short poem about the sea.", max_tokens=1))
    assert resp.usage.prompt_tokens == len(P1_IDS)


def test_streaming_equals_nonstreaming(runner):
    req = dict(max_tokens=48, temperature=0.0)
    full = runner.send_chat_completion_request(ask("Explain what a hash table is in two sentences.", **req))
    chunks = list(runner.send_chat_completion_request(
        ask("Explain what a hash table is in two sentences.", stream=True, **req)))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full.choices[0].message.content
    assert full.choices[0].message.content.startswith("A hash table is a data structure")


def test_completion(runner):
    resp = runner.send_completion_request(CompletionRequest(prompt="The capital of France is", model="default",
                                                            max_tokens=8))
    assert resp.choices[0].text.strip()


def test_tokenization_matches_reference(runner):
    for text, ids in A4.items():
        assert runner.tokenize_text(text, True, None) == ids
        assert runner.tokenize_text(text, False, None) == ids


def test_teacher_forced_parity_with_transformers(runner, smollm2):
    """agentkit's greedy answer, fed to transformers (same weights, fp32): argmax agrees >= 95%."""
    import torch
    from transformers import AutoModelForCausalLM

    from agentkit.engine.loading.loader import load_gguf

    resp = runner.send_chat_completion_request(
        ChatCompletionRequest(messages=[{"role": "user", "content": "Write a short poem about the sea."}],
                              model="default", max_tokens=128, temperature=0.0, ignore_eos=True, logprobs=True))
    # greedy: the chosen token is the top-1 alternative, which carries its id
    answer = [lp.top_logprobs[0].token for lp in resp.choices[0].logprobs.content]
    assert len(answer) == 128
    d, f = smollm2
    loaded = load_gguf(d, f, dtype=torch.float32, progress=False)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict, strict=False)
    model.tie_weights()
    ids = P1_IDS + answer
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    hf_argmax = logits[len(P1_IDS) - 1 : -1].argmax(-1).tolist()
    agree = sum(a == b for a, b in zip(hf_argmax, ids[len(P1_IDS):]))
    assert agree >= 0.95 * 128, agree

    # the float8 KV cache on the same weights: teacher-forced agreement stays >= 95% too
    from agentkit.engine.model_runner import KVOptions, NativeRunner

    f8 = NativeRunner(loaded.config, loaded.state_dict, torch.float32, torch.device("cpu"), 1024,
                      KVOptions(cache_type="f8e4m3"))
    f8_argmax = f8.logits_for(ids)[len(P1_IDS) - 1 : -1].argmax(-1).tolist()
    agree_f8 = sum(a == b for a, b in zip(f8_argmax, hf_argmax))
    assert agree_f8 >= 0.95 * 128, agree_f8
