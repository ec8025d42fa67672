"""The server-side agent loop on real models: tool calls forced by grammar, executed, fed back."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest

from agentkit import (
    AgentPermission,
    AgentToolApprovalDecision,
    ChatCompletionRequest,
    Runner,
    ToolChoice,
    Which,
    hookimpl,
)
from agentkit.errors import CancelToolCall
from agentkit.tools import Tool

CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
               "required": ["city"], "additionalProperties": False}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                                 "parameters": CITY_SCHEMA, "strict": True}}
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def calls():
    return []


@pytest.fixture(scope="module")
def runner(tiny_llama, calls):
    def get_weather(name, args):
        calls.append((name, args))
        return f"sunny in {args['city']}"

    r = Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"get_weather": get_weather})
    yield r
    r.shutdown()


@pytest.fixture(scope="module")
def faulty_runner(tiny_llama):
    def broken(name, args):
        """Always fails.

        Args:
            reason (str): why it fails
        """
        raise RuntimeError("backend down")

    def not_a_string(name, args):
        return {"oops": 1}

    r = Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"broken": broken, "not_a_string": not_a_string})
    yield r
    r.shutdown()


def _req(**kw):
    base = dict(model="x", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                tool_schemas=[json.dumps(WEATHER_TOOL)], max_tokens=48, max_tool_rounds=1)
    base.update(kw)
    return ChatCompletionRequest(**base)


def test_required_call_runs_callback_and_feeds_result_back(runner, calls):
    calls.clear()
    resp = runner.send_chat_completion_request(_req(tool_choice="required"))
    assert len(calls) == 1
    name, args = calls[0]
    assert name == "get_weather" and isinstance(args["city"], str) and len(args["city"]) <= 12
    assert set(args) == {"city"}
    rec = resp.agentic_tool_calls
    assert len(rec) == 1 and rec[0].name == "get_weather" and rec[0].round == 0
    assert json.loads(rec[0].arguments) == args and rec[0].result_content == f"sunny in {args['city']}"
    assert resp.session_id
    # usage sums both rounds: the second prompt contains the first prompt plus the call and result
    assert resp.usage.prompt_tokens > 2 * 20
    exported = json.loads(runner.export_session(resp.session_id))
    roles = [m["role"] for m in exported["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = exported["messages"][1]["tool_calls"][0]
    assert exported["messages"][2]["tool_call_id"] == call["id"]
    assert exported["messages"][2]["content"] == f"sunny in {args['city']}"


def test_named_choice_picks_that_tool(runner, calls):
    calls.clear()
    resp = runner.send_chat_completion_request(_req(tool_choice=FORCE_WEATHER))
    assert [c[0] for c in calls] == ["get_weather"]
    assert resp.choices[0].finish_reason in ("stop", "length", "tool_calls")


def _bounded(name):
    return json.dumps({"type": "function", "function": {"name": name, "description": "Run it.", "strict": True, "parameters": {
        "type": "object", "properties": {"mode": {"enum": ["fast", "slow"]}}, "required": ["mode"],
        "additionalProperties": False}}})


def test_failing_callback_becomes_error_result(faulty_runner):
    # the user schema (same name as the callback) describes it: no conflict error, the callback runs
    resp = faulty_runner.send_chat_completion_request(_req(tool_schemas=[_bounded("broken")], tool_choice={
        "type": "function", "function": {"name": "broken"}}))
    rec = resp.agentic_tool_calls
    assert [r.name for r in rec] == ["broken"] and json.loads(rec[0].arguments)["mode"] in ("fast", "slow")
    err = json.loads(rec[0].result_content)
    assert err == {"error": "RuntimeError: backend down", "tool": "broken", "status": "failed"}


def test_non_string_result_is_an_error_result(faulty_runner):
    resp = faulty_runner.send_chat_completion_request(_req(tool_schemas=[_bounded("not_a_string")], tool_choice={
        "type": "function", "function": {"name": "not_a_string"}}))
    out = json.loads(resp.agentic_tool_calls[0].result_content)
    assert out["status"] == "failed" and "expected str" in out["error"]


def test_callback_without_schema_is_offered_with_derived_schema(faulty_runner):
    # no tool_schemas: each registered callback is offered, described by its docstring
    tok = faulty_runner.served_model().tokenizer
    prompts: list[str] = []
    encode = tok.encode
    tok.encode = lambda text, **kw: (prompts.append(text), encode(text, **kw))[1]
    try:
        faulty_runner.send_chat_completion_request(_req(tool_schemas=None, max_tokens=1))
    finally:
        del tok.encode
    # the template renders each offered tool as one JSON line between <tools> and </tools>
    listing = next(p for p in prompts if "<tools>" in p).split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    offered = {t["function"]["name"]: t["function"] for t in map(json.loads, listing.splitlines())}
    assert offered["broken"]["description"] == "Always fails."
    assert offered["broken"]["parameters"] == {"type": "object", "properties": {"reason": {
        "type": "string", "description": "why it fails"}}, "required": ["reason"]}
    assert set(offered) == {"broken", "not_a_string"}


def test_max_tool_rounds_zero_returns_tool_calls_to_client(runner, calls):
    calls.clear()
    resp = runner.send_chat_completion_request(_req(tool_choice="required", max_tool_rounds=0))
    assert calls == []
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments).keys() == {"city"}
    assert msg.tool_calls[0].id.startswith("call-") and resp.agentic_tool_calls is None


def test_deny_permission_gives_denied_result(runner, calls):
    calls.clear()
    resp = runner.send_chat_completion_request(_req(tool_choice="required", agent_permission=AgentPermission.Deny))
    assert calls == []
    out = json.loads(resp.agentic_tool_calls[0].result_content)
    assert out == {"status": "denied", "exception": "get_weather was denied by policy."}


def test_ask_without_handler_denies(runner, calls):
    calls.clear()
    resp = runner.send_chat_completion_request(_req(tool_choice="required", agent_permission="ask"))
    assert calls == [] and "no approval handler" in resp.agentic_tool_calls[0].result_content


@pytest.mark.parametrize("answer, runs", [
    (True, True), (False, False), (AgentToolApprovalDecision.approve(), True),
    (AgentToolApprovalDecision.deny("not today"), False), ("yes", False),
])
def test_ask_with_handler(runner, calls, answer, runs):
    calls.clear()
    seen = []

    def approve(approval):
        seen.append(approval)
        return answer

    resp = runner.send_chat_completion_request(_req(tool_choice="required", agent_permission=AgentPermission.Ask,
                                                    agent_approval_callback=approve))
    assert len(seen) == 1 and seen[0].tool.label == "get_weather" and "city" in seen[0].arguments()
    assert bool(calls) is runs
    if answer is not True and not runs:
        content = resp.agentic_tool_calls[0].result_content
        assert ("not today" in content) if isinstance(answer, AgentToolApprovalDecision) else "denied" in content


def test_remember_for_session_skips_second_approval(runner, calls):
    seen = []

    def approve(approval):
        seen.append(approval)
        return AgentToolApprovalDecision.approve(remember_for_session=True)

    first = runner.send_chat_completion_request(_req(tool_choice="required", agent_permission="ask",
                                                     agent_approval_callback=approve))
    runner.send_chat_completion_request(_req(tool_choice="required", agent_permission="ask",
                                             agent_approval_callback=approve, session_id=first.session_id))
    assert len(seen) == 1


def test_streaming_through_the_loop(runner, calls):
    calls.clear()
    chunks = list(runner.send_chat_completion_request(_req(tool_choice="required", stream=True)))
    assert len(calls) == 1
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finals) == 1 and chunks[-1] is finals[0]
    assert finals[0].session_id and finals[0].usage.prompt_tokens > 40
    assert all(c.usage is None for c in chunks[:-1])


def test_without_callbacks_tool_calls_go_to_the_client(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False) as r:
        resp = r.send_chat_completion_request(_req(tool_choice="required", max_tool_rounds=None))
        assert resp.choices[0].finish_reason == "tool_calls" and resp.session_id is None
        call = resp.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
        chunks = list(r.send_chat_completion_request(_req(tool_choice="required", max_tool_rounds=None, stream=True)))
        deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        assert len(deltas) == 1 and deltas[0][0].function.name == "get_weather"
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        none = r.send_chat_completion_request(_req(tool_choice=ToolChoice.NoTools, max_tool_rounds=None))
        assert none.choices[0].message.tool_calls is None


class DicePlugin:
    """A plugin object given to Runner(plugins=[...]): one strict tool plus a logging wrapper."""

    plugin_name = "dice"

    def __init__(self):
        self.log = []

    @hookimpl
    def register_tools(self, register):
        def roll(sides: Literal["d6", "d20"]) -> str:
            """Roll a die.

            Args:
                sides: which die
            """
            return "4" if sides == "d6" else "17"

        register(Tool.from_function(roll, strict=True))

    @hookimpl(wrapper=True)
    def agent_execute_tool(self, call, session):
        self.log.append(("before", call.name, session.id))
        result = yield
        self.log.append(("after", result.content))
        return result


def test_plugin_tool_and_wrapper_through_the_runner(tiny_llama):
    dice = DicePlugin()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[dice]) as r:
        resp = r.send_chat_completion_request(_req(tool_schemas=None, tool_choice="required"))
        rec = resp.agentic_tool_calls
        assert [x.name for x in rec] == ["roll"]
        expected = "4" if json.loads(rec[0].arguments)["sides"] == "d6" else "17"
        assert rec[0].result_content == expected
        assert dice.log == [("before", "roll", resp.session_id), ("after", expected)]
        # the async twin runs the same loop
        again = asyncio.run(r.asend_chat_completion_request(_req(tool_schemas=None, tool_choice="required")))
        assert [x.name for x in again.agentic_tool_calls] == ["roll"] and again.session_id


class Veto:
    """An approval policy as a plugin: a wrapper that cancels every call."""

    @hookimpl(wrapper=True)
    def agent_execute_tool(self, call, session):
        raise CancelToolCall(f"{call.name} is not allowed here")
        yield  # pragma: no cover


def test_wrapper_can_cancel_calls(tiny_llama, calls):
    calls.clear()

    def get_weather(name, args):
        calls.append(args)
        return "sunny"

    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[Veto()],
                tool_callbacks={"get_weather": get_weather}) as r:
        resp = r.send_chat_completion_request(_req(tool_choice="required"))
    assert calls == []
    out = json.loads(resp.agentic_tool_calls[0].result_content)
    assert out["status"] == "denied" and "not allowed here" in out["error"]


class LockedDice(DicePlugin):
    """The same tool with its own permission floor: Deny."""

    @hookimpl
    def register_tools(self, register):
        def roll(sides: Literal["d6", "d20"]) -> str:
            """Roll a die."""
            return "4"

        register(Tool.from_function(roll, strict=True, permission=AgentPermission.Deny))


def test_tool_permission_floor_applies_without_request_permission(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[LockedDice()]) as r:
        resp = r.send_chat_completion_request(_req(tool_schemas=None, tool_choice="required"))
    assert json.loads(resp.agentic_tool_calls[0].result_content) == {
        "status": "denied", "exception": "roll was denied by policy."}
