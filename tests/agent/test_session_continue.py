"""Both client styles through the Runner: send only the new message, or resend the whole history.

What the model saw is checked by comparing with a stateless request that carries the full history
itself: a greedy model given the same prompt gives the same reply and the same prompt_tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentkit import (
    ChatCompletionRequest,
    Runner,
    SessionConflictError,
    SessionVersionError,
    ToolChoice,
    Which,
)

HISTORY = [{"role": "user", "content": "My name is Ada and I live in Oslo."},
           {"role": "assistant", "content": "Nice to meet you, Ada from Oslo."}]
NEW = {"role": "user", "content": "Where do I live?"}
CITY = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "strict": True,
                                         "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Rome"]}},
                                                        "required": ["city"], "additionalProperties": False}}}


def ask(runner: Runner, session_id: str, messages, **kw):
    resp = runner.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages=messages, session_id=session_id, tool_choice=ToolChoice.NoTools, max_tokens=8, **kw))
    return resp.choices[0].message.content, resp.usage.prompt_tokens


def stored(runner: Runner, session_id: str) -> list[dict]:
    return json.loads(runner.export_session(session_id))["messages"]


@pytest.fixture(scope="module")
def runner(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False,
                tool_callbacks={"get_weather": lambda name, args: f"rain in {args['city']}"}) as r:
        yield r


def test_only_the_new_message_continues_an_imported_session(runner):
    runner.import_session("s1", json.dumps({"messages": HISTORY}))
    reference = ask(runner, "ref-1", HISTORY + [NEW])  # stateless: the client sends everything
    alone = ask(runner, "ref-2", [NEW])
    got = ask(runner, "s1", [NEW])
    assert got == reference
    assert got[1] > alone[1] + 15  # the stored exchange is in the prompt
    messages = stored(runner, "s1")
    assert messages[:3] == HISTORY + [NEW] and len(messages) == 4  # nothing dropped, nothing doubled
    # and again: the third turn sees both earlier exchanges
    third = {"role": "user", "content": "And my name?"}
    assert ask(runner, "s1", [third]) == ask(runner, "ref-3", messages + [third])
    assert [m["content"] for m in stored(runner, "s1")][:5] == [m["content"] for m in messages + [third]]


def test_resending_the_full_history_is_spliced_not_duplicated(runner):
    runner.import_session("s2", json.dumps({"messages": HISTORY}))
    got = ask(runner, "s2", HISTORY + [NEW])
    assert got == ask(runner, "ref-4", HISTORY + [NEW])
    assert stored(runner, "s2")[:3] == HISTORY + [NEW] and len(stored(runner, "s2")) == 4


def test_both_styles_give_the_same_prompt_after_an_agentic_turn(runner):
    first = runner.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages=[{"role": "user", "content": "Weather in Oslo?"}], tool_schemas=[json.dumps(CITY)],
        tool_choice="required", max_tokens=24, max_tool_rounds=1, session_id="trip"))
    after_first = stored(runner, "trip")
    assert [m["role"] for m in after_first] == ["user", "assistant", "tool", "assistant"]
    runner.import_session("trip-resend", runner.export_session("trip"))
    visible = [{"role": m["role"], "content": m["content"]} for m in after_first
               if m["role"] != "tool" and not m.get("tool_calls")]
    follow = {"role": "user", "content": "And tomorrow?"}
    continued = ask(runner, "trip", [follow])
    resent = ask(runner, "trip-resend", visible + [follow])
    assert continued == resent  # the tool call and its result are in both prompts
    assert stored(runner, "trip")[:5] == after_first + [follow]
    assert first.session_id == "trip"


def test_a_different_history_under_the_same_id_raises_and_keeps_the_session(runner):
    runner.import_session("s3", json.dumps({"messages": HISTORY}))
    before = runner.export_session("s3")
    other = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, NEW]
    with pytest.raises(SessionConflictError, match="s3"):
        ask(runner, "s3", other)
    stream = runner.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages=other, session_id="s3", max_tokens=4, stream=True))
    with pytest.raises(SessionConflictError):
        list(stream)
    assert runner.export_session("s3") == before
    runner.delete_session("s3")  # the documented way to replace it
    assert ask(runner, "s3", other) == ask(runner, "ref-5", other)


CHILD = textwrap.dedent("""
    import json, sys
    from agentkit import ChatCompletionRequest, Runner, ToolChoice, Which
    model, store, message = sys.argv[1:4]
    with Runner(Which.Plain(model), progress=False, session_store=store) as r:
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[json.loads(message)], session_id="durable", tool_choice=ToolChoice.NoTools,
            max_tokens=8))
        print(json.dumps([resp.choices[0].message.content, resp.usage.prompt_tokens]))
""")


def test_a_new_process_continues_a_stored_session_with_only_the_new_message(runner, tiny_llama, tmp_path):
    store = tmp_path / "sessions"
    with Runner(Which.Plain(tiny_llama), progress=False, session_store=str(store)) as first:
        ask(first, "durable", HISTORY[:1])
        saved = json.loads((store / "durable.json").read_text())["messages"]
        newer = b'{"version": 2, "id": "future", "messages": []}'  # written by a newer agentkit
        (store / "future.json").write_bytes(newer)
        for call in (lambda: first.export_session("future"), lambda: ask(first, "future", [NEW])):
            with pytest.raises(SessionVersionError, match="left in place"):
                call()
        assert (store / "future.json").read_bytes() == newer and not (store / "quarantine").exists()
    assert [m["role"] for m in saved] == ["user", "assistant"]
    expected = ask(runner, "ref-6", saved + [NEW])
    out = subprocess.run([sys.executable, "-c", CHILD, tiny_llama, str(store), json.dumps(NEW)],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AGENTKIT_LOAD_PLUGINS": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert tuple(json.loads(out.stdout.strip().splitlines()[-1])) == expected
    after = json.loads((store / "durable.json").read_text())["messages"]
    assert after[:3] == saved + [NEW] and [m["role"] for m in after] == ["user", "assistant", "user", "assistant"]


@pytest.mark.slow
def test_smollm2_continuing_a_session_puts_the_stored_history_in_the_prompt(smollm2):
    with Runner(Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1], tok_model_id=None),
                progress=False) as r:
        r.import_session("s1", json.dumps({"messages": HISTORY}))
        alone = ask(r, "fresh", [NEW], temperature=0.0)
        stateless = ask(r, "full", HISTORY + [NEW], temperature=0.0)
        continued = ask(r, "s1", [NEW], temperature=0.0)
        assert continued == stateless
        assert continued[1] - alone[1] >= 20  # the stored exchange (31 tokens) was rendered in
        assert [m["content"] for m in stored(r, "s1")][:3] == [m["content"] for m in HISTORY + [NEW]]



def test_two_concurrent_turns_on_one_session_both_survive(tiny_llama, tmp_path):
    barrier = threading.Barrier(2, timeout=60)

    def get_weather(name, args):
        barrier.wait()  # both turns have read the stored session before either one saves
        return "rain"

    def turn(r, text):
        return r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "user", "content": text}], session_id="both", max_tokens=32,
            tool_schemas=[json.dumps(CITY)], tool_choice="required", max_tool_rounds=1))

    for store in (None, str(tmp_path / "sessions")):
        with Runner(Which.Plain(tiny_llama), progress=False, session_store=store,
                    tool_callbacks={"get_weather": get_weather}) as r:
            r.import_session("both", json.dumps({"messages": HISTORY}))
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda text: turn(r, text), ["Weather in Oslo?", "Weather in Rome?"]))
            messages = stored(r, "both")
        assert messages[:2] == HISTORY
        users = [m["content"] for m in messages if m["role"] == "user"][1:]
        assert sorted(users) == ["Weather in Oslo?", "Weather in Rome?"]  # neither turn was lost
        assert [m["role"] for m in messages] == ["user", "assistant"] + ["user", "assistant", "tool", "assistant"] * 2
