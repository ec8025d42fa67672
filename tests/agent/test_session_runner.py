"""Sessions through the Runner: export/import round trips and a durable store shared across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agentkit import ChatCompletionRequest, Runner, ToolChoice, Which, hookimpl

CITY = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "strict": True,
                                         "parameters": {"type": "object", "properties": {"city": {"enum": ["Oslo", "Rome"]}},
                                                        "required": ["city"], "additionalProperties": False}}}


def get_weather(name, args):
    return f"sunny in {args['city']}"


def _first_turn(runner: Runner, session_id: str | None = None):
    return runner.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        tool_schemas=[json.dumps(CITY)], tool_choice="required", max_tokens=32, max_tool_rounds=1,
        session_id=session_id))


def _visible(exported: str) -> list[dict]:
    """What an OpenAI-style client holds: the user/assistant text messages, no tool traffic."""
    return [{"role": m["role"], "content": m["content"]} for m in json.loads(exported)["messages"]
            if m["role"] != "tool" and not m.get("tool_calls")]


def _follow_up(runner: Runner, session_id: str, history: list[dict]):
    return runner.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages=history + [{"role": "user", "content": "And tomorrow?"}], session_id=session_id,
        tool_choice=ToolChoice.NoTools, max_tokens=12))


def _fingerprint(resp) -> tuple:
    return resp.choices[0].message.content, resp.usage.prompt_tokens


def test_export_import_into_a_new_runner_continues_the_same_history(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"get_weather": get_weather}) as a:
        first = _first_turn(a)
        exported = a.export_session(first.session_id)
        data = json.loads(exported)
        assert data["version"] == 1 and data["id"] == first.session_id
        assert [m["role"] for m in data["messages"]] == ["user", "assistant", "tool", "assistant"]
        history = _visible(exported)
        a.import_session("copy", exported)
        expected = _fingerprint(_follow_up(a, "copy", history))
        without = _follow_up(a, "fresh", history)  # same messages, no stored tool history to splice in
        assert sorted(a.list_session_ids()) == sorted([first.session_id, "copy", "fresh"])
    with Runner(Which.Plain(tiny_llama), progress=False, tool_callbacks={"get_weather": get_weather}) as b:
        assert b.export_session(first.session_id) is None
        b.import_session(first.session_id, exported)
        assert json.loads(b.export_session(first.session_id))["messages"] == data["messages"]
        got = _follow_up(b, first.session_id, history)
        assert _fingerprint(got) == expected  # same history -> same prompt, same greedy reply
        assert got.usage.prompt_tokens > without.usage.prompt_tokens + 10  # the tool call and result were spliced in
        stored = json.loads(b.export_session(first.session_id))["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
        assert b.delete_session(first.session_id) is True and b.delete_session(first.session_id) is False


def test_import_rejects_bad_json_and_newer_versions(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False) as r:
        with pytest.raises(ValueError, match="Failed to parse session JSON"):
            r.import_session("s", "{not json")
        with pytest.raises(ValueError, match="newer than this agentkit supports"):
            r.import_session("s", json.dumps({"version": 99, "messages": []}))
        r.import_session("old", json.dumps({"messages": [{"role": "user", "content": "hi"}]}))  # mistral.rs shape
        assert json.loads(r.export_session("old"))["version"] == 1
        assert r.list_session_ids() == ["old"]


CHILD = textwrap.dedent("""
    import json, sys
    from agentkit import ChatCompletionRequest, Runner, ToolChoice, Which, hookimpl
    model, store, session_id, history = sys.argv[1:5]
    with Runner(Which.Plain(model), progress=False, session_store=store,
                tool_callbacks={"get_weather": lambda n, a: "sunny"}) as r:
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=json.loads(history) + [{"role": "user", "content": "And tomorrow?"}],
            session_id=session_id, tool_choice=ToolChoice.NoTools, max_tokens=12))
        print(json.dumps([resp.choices[0].message.content, resp.usage.prompt_tokens, r.list_session_ids()]))
""")


def test_durable_store_survives_a_restart(tiny_llama, tmp_path):
    store = tmp_path / "sessions"
    with Runner(Which.Plain(tiny_llama), progress=False, session_store=str(store),
                tool_callbacks={"get_weather": get_weather}) as a:
        first = _first_turn(a, session_id="trip-1")
        assert (store / "trip-1.json").exists()
        history = _visible(a.export_session("trip-1"))
        a.import_session("trip-copy", a.export_session("trip-1"))
        expected = _fingerprint(_follow_up(a, "trip-copy", history))
    out = subprocess.run([sys.executable, "-c", CHILD, tiny_llama, str(store), "trip-1", json.dumps(history)],
                         capture_output=True,
                         text=True, timeout=120, env={**__import__("os").environ, "AGENTKIT_LOAD_PLUGINS": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    content, prompt_tokens, ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert (content, prompt_tokens) == expected
    assert sorted(ids) == ["trip-1", "trip-copy"]
    saved = json.loads((store / "trip-1.json").read_text())
    assert [m["role"] for m in saved["messages"]][-2:] == ["user", "assistant"]
    assert first.session_id == "trip-1"


def test_corrupt_session_file_is_quarantined_and_others_work(tiny_llama, tmp_path):
    store = tmp_path / "sessions"
    with Runner(Which.Plain(tiny_llama), progress=False, session_store=str(store),
                tool_callbacks={"get_weather": get_weather}) as r:
        _first_turn(r, session_id="good")
        _first_turn(r, session_id="bad")
        (store / "bad.json").write_text('{"version": 1, "messages": [')
        with pytest.raises(ValueError, match="bad"):
            r.export_session("bad")
        assert list((store / "quarantine").iterdir())  # kept, not deleted
        assert json.loads(r.export_session("good"))["id"] == "good"
        assert _follow_up(r, "good", []).session_id == "good"


class Notes:
    """A plugin that keeps state in each session through the session hooks."""

    plugin_name = "notes"

    def __init__(self):
        self.loaded = []

    @hookimpl
    def session_dump(self, session, store):
        store.put("seen", {"messages": len(session.messages)})

    @hookimpl
    def session_load(self, session, store):
        self.loaded.append(store.get("seen"))


def test_plugin_state_travels_with_the_session(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[Notes()],
                tool_callbacks={"get_weather": get_weather}) as a:
        first = _first_turn(a)
        exported = a.export_session(first.session_id)
    assert json.loads(exported)["plugin_state"] == {"notes": {"seen": {"messages": 4}}}
    notes = Notes()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[notes],
                tool_callbacks={"get_weather": get_weather}) as b:
        b.import_session("s", exported)
        _follow_up(b, "s", _visible(exported))
        assert notes.loaded == [{"messages": 4}]
        assert json.loads(b.export_session("s"))["plugin_state"]["notes"]["seen"] == {"messages": 6}
