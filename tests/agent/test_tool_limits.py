"""Tool limits (agentkit.agent.tool_limits): results capped to a share of the context, per-call timeout,
and the overflow error; each tried against the tiny Llama through a Runner."""

from __future__ import annotations

import json
import threading

import pytest

from agentkit import ChatCompletionRequest, RequestError, Runner, Which
from agentkit.agent.tool_limits import ToolLimits, cap_tool_output, run_with_timeout
from agentkit.errors import ToolOutputOverflowError
from agentkit.testing import tiny_tokenizer
from agentkit.tools import ToolCall, ToolResult

FIVE_MB = "lorem ipsum dolor " * 291271  # the D7 reproducer's result, 5.2 MB
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look something up.", "strict": True,
                                           "parameters": {"type": "object", "properties": {"query": {
                                               "type": "string", "maxLength": 12}}, "required": ["query"],
                                               "additionalProperties": False}}}


class _CountingTokenizer:
    """A real tokenizer that records how many characters each `encode` call was given."""

    def __init__(self) -> None:
        self.hf = tiny_tokenizer()
        self.seen: list[int] = []

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.seen.append(len(text))
        return self.hf.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)


def test_cap_keeps_head_and_tail_with_a_marker_and_never_tokenizes_the_whole_text():
    tok = _CountingTokenizer()
    text = "START " + FIVE_MB + " END"
    out = cap_tool_output(text, tok, 200)
    assert out.startswith("START lorem") and out.endswith("dolor  END")
    head, rest = out.split("\n[... ", 1)
    n, tail = rest.split(" characters truncated ...]\n", 1)
    assert len(head) + int(n) + len(tail) == len(text)  # the marker counts exactly what was left out
    assert len(tok.encode(out)) <= 200
    assert max(tok.seen[:-1]) <= 200 * 16  # only a window of the 5 MB was ever tokenized


def test_cap_leaves_short_results_alone():
    tok = _CountingTokenizer()
    assert cap_tool_output("sunny, 21 C", tok, 64) == "sunny, 21 C"
    fits = "word " * 14
    assert 64 < len(fits) and len(tok.encode(fits)) <= 64  # longer than the budget in characters, not tokens
    assert cap_tool_output(fits, tok, 64) == fits
    with pytest.raises(TypeError, match="must be a str"):
        cap_tool_output(b"bytes", tok, 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw, match", [
    ({"timeout_secs": 0}, "tool_timeout_secs"), ({"timeout_secs": "5"}, "tool_timeout_secs"),
    ({"output_max_tokens": 4}, "tool_output_max_tokens"), ({"output_max_tokens": 1.5}, "tool_output_max_tokens"),
])
def test_limits_reject_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        ToolLimits(**kw)


def test_default_budget_is_a_quarter_of_the_context():
    assert ToolLimits().output_budget(8192) == 2048
    assert ToolLimits(output_max_tokens=300).output_budget(8192) == 300


def test_timeout_returns_an_error_result_while_the_callback_still_runs():
    release = threading.Event()
    call = ToolCall(name="slow", arguments="{}")
    result = run_with_timeout(lambda: ToolResult(content="late") if release.wait(60) else None, call, 0.2)
    try:
        assert result.status == "failed"
        assert "timed out after 0.2 seconds" in json.loads(result.content)["error"]
        assert any(t.name == "agentkit-tool-slow" and t.is_alive() for t in threading.enumerate())
    finally:
        release.set()
    with pytest.raises(KeyError):  # an exception of a fast callback reaches the caller
        run_with_timeout(lambda: {}["x"], call, 5)
    assert run_with_timeout(lambda: ToolResult(content="ok"), call, 5).content == "ok"


def _ask(r: Runner, **kw) -> object:
    return r.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages="Look up the population of Paris.", tool_schemas=[json.dumps(LOOKUP)],
        tool_choice="required", max_tokens=48, max_tool_rounds=1, **kw))


def test_a_5mb_tool_result_is_capped_and_the_turn_finishes(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"lookup": lambda n, a: FIVE_MB}) as r:
        tok = r.served_model().tokenizer
        seen: list[int] = []
        encode = tok.encode
        tok.encode = lambda text, **kw: (seen.append(len(text)), encode(text, **kw))[1]
        try:
            resp = _ask(r)
        finally:
            del tok.encode
        shown = resp.agentic_tool_calls[0].result_content
        assert "characters truncated ...]" in shown and len(shown) < 5000
        assert max(seen) < 20_000  # neither the tool result nor a prompt of megabytes was tokenized
        stored = json.loads(r.export_session(resp.session_id))["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
        assert stored[2]["content"] == shown


def test_a_result_that_still_overflows_names_the_tool_and_keeps_the_turn(tiny_llama):
    # a budget above the 512-token context lets a 30 KB result through: the next prompt overflows
    with Runner(Which.Plain(tiny_llama), progress=False, tool_output_max_tokens=100_000,
                tool_callbacks={"lookup": lambda n, a: "word " * 6000}) as r:
        with pytest.raises(ToolOutputOverflowError, match="a tool result overflowed the context") as info:
            _ask(r, session_id="big")
        assert isinstance(info.value, RequestError) and "'lookup'" in str(info.value)
        stored = json.loads(r.export_session("big"))["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant", "tool"]  # the turn so far is saved


def test_a_sleeping_callback_is_bounded_by_tool_timeout_secs(tiny_llama):
    release = threading.Event()

    def sleepy(name, args):
        release.wait(60)
        return "too late"

    with Runner(Which.Plain(tiny_llama), progress=False, tool_timeout_secs=0.5,
                tool_callbacks={"lookup": sleepy}) as r:
        try:
            resp = _ask(r)
            err = json.loads(resp.agentic_tool_calls[0].result_content)
            assert err["status"] == "failed" and "timed out after 0.5 seconds" in err["error"]
            assert not release.is_set()  # the turn ended while the callback was still asleep
            assert resp.choices[0].finish_reason in ("stop", "length")
        finally:
            release.set()


def test_runner_rejects_a_bad_tool_timeout(tiny_llama):
    with pytest.raises(ValueError, match="tool_timeout_secs must be a positive number"):
        Runner(Which.Plain(tiny_llama), progress=False, tool_timeout_secs=-1)
