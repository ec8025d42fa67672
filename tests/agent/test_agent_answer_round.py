"""The agent loop's answer-only round: at the round cap, after a repeated call, after a failed call.

The tiny Llama's replies are steered by wrapping `collect_chat` (what a round returned) and the
rounds' `answer_only` flags are read from `prepare_chat`; generation itself is real.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import agentkit.agent.loop as agent_loop
from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.api.enums import ToolCallType
from agentkit.api.responses import CalledFunction, ToolCallResponse

CITY = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "strict": True,
                                         "parameters": {"type": "object", "properties": {"city": {
                                             "type": "string", "maxLength": 12}}, "required": ["city"],
                                             "additionalProperties": False}}}


@pytest.fixture(scope="module")
def served():
    return []


@pytest.fixture(scope="module")
def runner(tiny_llama, served):
    def get_weather(name, args):
        served.append(args)
        return json.dumps({"city": args.get("city"), "temperature_c": 7})

    r = Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"get_weather": get_weather})
    yield r
    r.shutdown()


@pytest.fixture()
def rounds(monkeypatch):
    """The `answer_only` flag of each round's prompt, in order."""
    flags: list[bool] = []
    prepare = agent_loop.prepare_chat

    def spy(*args, **kw):
        flags.append(bool(kw.get("answer_only")))
        return prepare(*args, **kw)

    monkeypatch.setattr(agent_loop, "prepare_chat", spy)
    return flags


def _steer(monkeypatch, replies):
    """Round i's reply becomes replies[i](message) while there are entries; later rounds are real."""
    collect = agent_loop.collect_chat
    seen = []

    def steered(*args, **kw):
        resp = collect(*args, **kw)
        if len(seen) < len(replies):
            msg = replies[len(seen)](resp.choices[0].message)
            resp = replace(resp, choices=[replace(resp.choices[0], message=msg)])
        seen.append(resp)
        return resp

    monkeypatch.setattr(agent_loop, "collect_chat", steered)


def _call(city):
    return lambda msg: replace(msg, content=None, tool_calls=[ToolCallResponse(
        index=0, id=f"call-{city}", tp=ToolCallType.Function,
        function=CalledFunction(name="get_weather", arguments=json.dumps({"city": city})))])


def _req(**kw):
    base = dict(model="x", messages="Weather in Oslo?", tool_schemas=[json.dumps(CITY)], max_tokens=48,
                tool_choice="required", max_tool_rounds=3)
    base.update(kw)
    return ChatCompletionRequest(**base)


@pytest.mark.parametrize("stream", [False, True])
def test_the_round_after_the_cap_must_answer(runner, rounds, stream):
    out = runner.send_chat_completion_request(_req(max_tool_rounds=1, stream=stream))
    if stream:
        out = list(out)[-1]
        assert out.choices[0].delta.tool_calls is None
    else:
        assert out.choices[0].message.tool_calls is None and len(out.agentic_tool_calls) == 1
    assert out.choices[0].finish_reason in ("stop", "length")
    assert rounds == [False, True]


def test_a_repeated_call_is_not_run_again_and_the_model_answers(runner, rounds, served, monkeypatch):
    served.clear()
    _steer(monkeypatch, [_call("Oslo"), _call("Oslo")])
    resp = runner.send_chat_completion_request(_req())
    assert served == [{"city": "Oslo"}]  # run once
    assert rounds == [False, False, True]
    assert resp.choices[0].message.tool_calls is None
    assert [r.name for r in resp.agentic_tool_calls] == ["get_weather"]


def test_a_new_call_still_runs(runner, rounds, served, monkeypatch):
    served.clear()
    _steer(monkeypatch, [_call("Oslo"), _call("Rome")])
    runner.send_chat_completion_request(_req(max_tool_rounds=2))
    assert served == [{"city": "Oslo"}, {"city": "Rome"}]
    assert rounds == [False, False, True]  # the third round is the one after the cap


def test_a_failed_call_in_the_text_gets_an_answer_round(runner, rounds, monkeypatch):
    broken = '<tool-call id="1">{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    _steer(monkeypatch, [_call("Oslo"), lambda msg: replace(msg, content=broken, tool_calls=None)])
    resp = runner.send_chat_completion_request(_req())
    assert rounds == [False, False, True]
    assert resp.choices[0].message.content != broken


def test_plain_text_after_a_result_ends_the_turn(runner, rounds, monkeypatch):
    _steer(monkeypatch, [_call("Oslo"), lambda msg: replace(msg, content="It is 7 degrees in Oslo.", tool_calls=None)])
    resp = runner.send_chat_completion_request(_req())
    assert rounds == [False, False] and resp.choices[0].message.content == "It is 7 degrees in Oslo."
