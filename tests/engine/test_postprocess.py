"""The engine split: stop strings and deltas in IncrementalDetokenizer, finishing in Scheduler.postprocess,
grammar outcomes as values (GrammarStep.outcome)."""

from __future__ import annotations

import pytest

from agentkit.engine.grammar_masks import MaskBatch, RowMask
from agentkit.engine.grammar_step import GrammarStep
from agentkit.engine.sampling import SampleResult, SamplingParams
from agentkit.engine.scheduler import Scheduler
from agentkit.engine.sequence import EngineRequest, Sequence
from agentkit.engine.tokenizer import IncrementalDetokenizer, Tokenizer, load_tokenizer


@pytest.fixture(scope="module")
def tok(tiny_llama) -> Tokenizer:
    return load_tokenizer(tiny_llama)


def _run(tok: Tokenizer, text: str, stop: list[str]) -> tuple[list[str], IncrementalDetokenizer]:
    """Feed `text`'s tokens one by one as the engine does; return the deltas handed out."""
    detok = IncrementalDetokenizer(tok, stop=stop)
    deltas = []
    for t in tok.encode(text):
        found = detok.update(t)
        deltas.append(detok.take_delta(finished=found is not None))
        if found is not None:
            return deltas, detok
    deltas.append(detok.take_delta(finished=True))
    return deltas, detok


def test_stop_string_cuts_the_text_and_is_reported(tok):
    deltas, detok = _run(tok, "one two STOP three", ["STOP"])
    assert "".join(deltas) == "one two "
    assert detok.stop_sequence == "STOP"


def test_stop_prefix_is_held_back_until_it_cannot_be_a_stop(tok):
    stop = "STOP"
    detok = IncrementalDetokenizer(tok, stop=[stop])
    emitted = ""
    for t in tok.encode("a ST b STO c STOX d"):
        assert detok.update(t) is None
        emitted += detok.take_delta(finished=False)
        for k in range(1, len(stop)):  # nothing handed out may end in a possible stop-string prefix
            assert not (detok.text.endswith(stop[:k]) and emitted.endswith(stop[:k]))
    emitted += detok.take_delta(finished=True)
    assert emitted == "a ST b STO c STOX d" == detok.text


def test_earliest_of_several_stop_strings_wins(tok):
    deltas, detok = _run(tok, "x yy zz", ["zz", "yy"])
    assert "".join(deltas) == "x " and detok.stop_sequence == "yy"
    deltas, detok = _run(tok, "x hello world", ["llo", "hello"])  # both end at the same character
    assert "".join(deltas) == "x " and detok.stop_sequence == "hello"


def test_without_stop_strings_the_deltas_are_the_decoded_text(tok):
    text = "café 🙂 done"
    deltas, detok = _run(tok, text, [])
    assert "".join(deltas) == tok.decode(tok.encode(text)) and detok.stop_sequence is None


def _seq(tok: Tokenizer, params: SamplingParams, max_tokens: int, prompt: int = 3) -> Sequence:
    req = EngineRequest("r", list(range(1, prompt + 1)), params)
    seq = Sequence(request=req, index=0, token_ids=list(req.prompt_ids), num_prompt=prompt, max_tokens=max_tokens,
                   detok=IncrementalDetokenizer(tok, stop=params.stop_seqs))
    req.seqs.append(seq)
    return seq


def _scheduler(tok: Tokenizer, max_seq_len: int = 64) -> Scheduler:
    return Scheduler(4, 64, num_blocks=8, block_size=16, prefix_cache_n=0, max_seq_len=max_seq_len,
                     eos_token_ids=tok.eos_token_ids)


def _feed(sched: Scheduler, seq: Sequence, tokens: list[int]) -> None:
    for t in tokens:
        if seq.finish_reason is not None:
            break
        sched.postprocess([seq], [SampleResult(t, -0.5, None)], now=1.0)


def test_postprocess_finishes_on_eos_max_tokens_and_context(tok):
    eos = min(tok.eos_token_ids)
    word = tok.encode(" hello")[0]
    s = _seq(tok, SamplingParams(), max_tokens=10)
    _feed(_scheduler(tok), s, [word, eos, word])
    assert s.finish_reason == "stop" and s.token_ids[-1] == eos and s.num_generated == 2
    assert s.pending_ids == [word, eos] and s.t_first_token == 1.0 and s.cum_logprob == -1.0

    s = _seq(tok, SamplingParams(ignore_eos=True), max_tokens=3)
    _feed(_scheduler(tok), s, [eos, eos, eos, eos])
    assert s.finish_reason == "length" and s.num_generated == 3

    s = _seq(tok, SamplingParams(), max_tokens=100, prompt=5)
    _feed(_scheduler(tok, max_seq_len=7), s, [word] * 5)
    assert s.finish_reason == "length" and s.num_tokens == 7


def test_postprocess_finishes_on_a_stop_string(tok):
    s = _seq(tok, SamplingParams(stop_seqs=["END"]), max_tokens=50)
    _feed(_scheduler(tok), s, tok.encode("go on END more"))
    assert s.finish_reason == "stop" and s.stop_sequence == "END"
    assert s.detok.take_delta(finished=True) == "go on "


def test_grammar_outcome_is_a_value(tok):
    a = _seq(tok, SamplingParams(), max_tokens=5)
    b = _seq(tok, SamplingParams(), max_tokens=5)
    b.request.request_id = "rb"
    c = _seq(tok, SamplingParams(), max_tokens=5)
    c.request.request_id = "rc"
    mask = object()
    masks = MaskBatch([RowMask(allowed=mask), RowMask(stopped=True), RowMask(error="boom")], 0.0)
    out = GrammarStep.outcome([a, b, c], masks)
    assert out.allowed == {a.seq_id: mask} and out.stopped == [b]
    assert out.failed == {"rc": (c.request, "constrained decoding failed: boom")}
    assert all(s.finish_reason is None for s in (a, b, c))  # nothing written into the sequences
