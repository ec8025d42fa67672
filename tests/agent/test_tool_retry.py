"""A round whose calls all failed: the errors are shown as such and the next round is forced again.

The tiny Llama's replies are steered by wrapping `collect_chat`; each round's `tool_choice` is
read from `prepare_chat`; tools really run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

import agentkit.agent_loop as agent_loop
from agentkit import AgentPermission, ChatCompletionRequest, Runner, Which
from agentkit.engine.chat_template import ChatTemplate
from agentkit.enums import ToolCallType
from agentkit.responses import CalledFunction, ToolCallResponse
from agentkit.tool_calling import ANSWER_LINE, plan_tools, prompt_messages

CITY = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "strict": True,
                                         "parameters": {"type": "object", "properties": {"city": {
                                             "type": "string", "maxLength": 12}}, "required": ["city"],
                                             "additionalProperties": False}}}
PLAIN = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def runner(tiny_llama):
    def get_weather(name, args):
        if args.get("city") == "Nowhere":
            raise ValueError("unknown city 'Nowhere'")
        return json.dumps({"city": args.get("city"), "temperature_c": 7})

    r = Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"get_weather": get_weather})
    yield r
    r.shutdown()


@pytest.fixture()
def choices(monkeypatch):
    """Each round's tool_choice (None for an answer-only round), in order."""
    seen: list = []
    prepare = agent_loop.prepare_chat

    def spy(*args, **kw):
        seen.append(None if kw.get("answer_only") else kw.get("tool_choice"))
        return prepare(*args, **kw)

    monkeypatch.setattr(agent_loop, "prepare_chat", spy)
    return seen


def _steer(monkeypatch, replies):
    collect = agent_loop.collect_chat
    n = [0]

    def steered(*args, **kw):
        resp = collect(*args, **kw)
        if n[0] < len(replies):
            resp = replace(resp, choices=[replace(resp.choices[0], message=replies[n[0]](resp.choices[0].message))])
        n[0] += 1
        return resp

    monkeypatch.setattr(agent_loop, "collect_chat", steered)


def _call(city):
    return lambda msg: replace(msg, content=None, tool_calls=[ToolCallResponse(
        index=0, id=f"call-{city}", tp=ToolCallType.Function,
        function=CalledFunction(name="get_weather", arguments=json.dumps({"city": city})))])


def _words(msg):
    return replace(msg, content="It is 7 degrees.", tool_calls=None)


def _req(**kw):
    return ChatCompletionRequest(**{**dict(model="x", messages="Weather in Oslo?", tool_schemas=[json.dumps(CITY)],
                                           max_tokens=24, tool_choice="required", max_tool_rounds=3), **kw})


def test_after_a_failed_round_the_choice_is_forced_again(runner, choices, monkeypatch):
    _steer(monkeypatch, [_call("Nowhere"), _call("Oslo"), _words])
    resp = runner.send_chat_completion_request(_req())
    assert choices == ["required", "required", "auto"]
    assert [json.loads(r.result_content).get("status") for r in resp.agentic_tool_calls] == ["failed", None]


def test_after_a_successful_round_the_model_chooses(runner, choices, monkeypatch):
    _steer(monkeypatch, [_call("Oslo"), _words])
    runner.send_chat_completion_request(_req())
    assert choices == ["required", "auto"]


def test_a_denied_call_is_not_retried(runner, choices, monkeypatch):
    _steer(monkeypatch, [_call("Oslo"), _words])
    resp = runner.send_chat_completion_request(_req(agent_permission=AgentPermission.Deny))
    assert json.loads(resp.agentic_tool_calls[0].result_content)["status"] == "denied"
    assert choices == ["required", "auto"]


def test_retries_stop_at_the_round_cap(runner, choices, monkeypatch):
    _steer(monkeypatch, [_call("Nowhere"), _call("Nowhere!")])
    resp = runner.send_chat_completion_request(_req(max_tool_rounds=2))
    assert choices == ["required", "required", None] and len(resp.agentic_tool_calls) == 2


def test_errors_read_as_failures_and_invite_a_corrected_call():
    host = SimpleNamespace(template=ChatTemplate(source=PLAIN, origin="test"), arch="llama", extra={})
    error = json.dumps({"error": "unknown city 'Nowhere'", "tool": "get_weather", "status": "failed"})
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Nowhere"}}}]},
               {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": error}]
    turn = prompt_messages(history, plan_tools(host, [CITY], "required"))[-1]["content"]
    assert turn.splitlines() == ["get_weather failed: unknown city 'Nowhere'",
                                 "Call a tool again, with corrected arguments, to answer: Weather in Oslo?"]
    # the answer-only round answers; a result that merely has an "error" key among others is data
    final = prompt_messages(history, plan_tools(host, [CITY], "auto", answer_only=True))[-1]["content"]
    assert final.splitlines()[-1] == ANSWER_LINE.format(question="Weather in Oslo?")
    data = json.dumps({"error": 0.1, "tool": "gauge", "status": "ok", "reading": 3})
    mixed = prompt_messages(history[:2] + [{**history[2], "content": data}], plan_tools(host, [CITY], "auto"))
    assert mixed[-1]["content"].startswith("Here is what get_weather returned: error: 0.1")
