"""Tests of agentkit.sessions: the session JSON format, migration, plugin state, and the §2.8
history helpers (content-matching lookup and splice).

Reference: runner-api.md §2.8. Fast, offline, no torch.
"""

from __future__ import annotations

import base64
import json

import pytest

from agentkit.errors import SessionError
from agentkit.sessions import (
    SESSION_FORMAT_VERSION,
    PluginStateStore,
    Session,
    find_session_by_prefix,
    messages_match,
    splice_history,
    visible_messages,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()

SYS = {"role": "system", "content": "You are helpful."}
U1 = {"role": "user", "content": "What is 2+3?"}
TC1 = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]}
T1 = {"role": "tool", "name": "add", "content": "5"}
A1 = {"role": "assistant", "content": "It is 5."}
U2 = {"role": "user", "content": "And 5+5?"}
TC2 = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": {"a": 5, "b": 5}}}]}
T2 = {"role": "tool", "name": "add", "content": "10"}
A2 = {"role": "assistant", "content": "It is 10."}
U3 = {"role": "user", "content": "Thanks"}


def full_session(sid: str = "s1") -> Session:
    return Session(
        id=sid,
        messages=[SYS, U1, TC1, T1, A1],
        images=[PNG],
        videos=[{"fps": 2.0, "frames": [PNG, PNG], "total_num_frames": 10, "sampled_indices": [0, 5]}],
        files=[{"id": "file-1", "name": "out.txt", "mime_type": "text/plain", "bytes": 2, "created_at": 1,
                "purpose": "agent_output", "source": {"tool": "shell", "round": 0, "turn": 1},
                "text": "hi", "preview": "hi"}],
        plugin_state={"memo": {"notes": ["a", "b"], "count": 2}},
        approved_tools={"shell", "add"},
        created_at=100.0,
        updated_at=200.5,
    )


# --- JSON format ------------------------------------------------------------------------------


def test_to_json_shape_and_round_trip():
    s = full_session()
    obj = s.to_json()
    assert obj["version"] == SESSION_FORMAT_VERSION == 1
    assert obj["id"] == "s1"
    assert obj["approved_tools"] == ["add", "shell"]  # sorted list
    assert set(obj) == {"version", "id", "messages", "images", "videos", "files", "plugin_state",
                        "approved_tools", "created_at", "updated_at"}
    text = s.to_json_str()
    back = Session.from_json(text)
    assert back == s
    assert Session.from_json(text.encode()) == s
    assert Session.from_json(json.loads(text)) == s
    # to_json is a copy: mutating it leaves the session alone
    obj["messages"].append({"role": "user", "content": "x"})
    obj["plugin_state"]["memo"]["count"] = 99
    assert len(s.messages) == 5 and s.plugin_state["memo"]["count"] == 2


def test_from_json_dict_input_is_not_aliased():
    obj = full_session().to_json()
    s = Session.from_json(obj)
    s.messages[0]["content"] = "changed"
    assert obj["messages"][0]["content"] == "You are helpful."


def test_session_id_argument_overrides_stored_id():
    text = full_session("old").to_json_str()
    assert Session.from_json(text, session_id="new").id == "new"


def test_migrates_versionless_mistralrs_export():
    # What mistralrs' export_session returns: only messages (images/videos/files optional).
    s = Session.from_json(json.dumps({"messages": [U1, TC1, T1, A1]}), session_id="abc")
    assert s.id == "abc"
    assert s.messages == [U1, TC1, T1, A1]
    assert s.images == [] and s.videos == [] and s.files == []
    assert s.plugin_state == {} and s.approved_tools == set()
    assert s.created_at > 0 and s.updated_at >= s.created_at
    # re-export carries the current version
    assert json.loads(s.to_json_str())["version"] == 1
    # with images/videos as mistralrs writes them
    s2 = Session.from_json({"messages": [U1], "images": [PNG],
                            "videos": [{"fps": 1.0, "frames": [PNG], "total_num_frames": 1, "sampled_indices": [0]}]})
    assert s2.images == [PNG] and s2.videos[0]["total_num_frames"] == 1
    assert len(s2.id) == 36  # no id anywhere -> fresh uuid4


def test_newer_version_refused():
    obj = full_session().to_json()
    obj["version"] = 2
    with pytest.raises(ValueError, match=r"session format version 2 is newer than this agentkit supports "
                                         r"\(1\); upgrade agentkit"):
        Session.from_json(obj)


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1]])
def test_non_int_version_refused(version):
    obj = full_session().to_json()
    obj["version"] = version
    with pytest.raises(ValueError, match="version"):
        Session.from_json(obj)


@pytest.mark.parametrize(
    "payload, field",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "top level must be a JSON object"),
        ("{}", "messages"),
        ('{"messages": {}}', "`messages` must be a list"),
        ('{"messages": [1]}', r"messages\[0\] must be an object"),
        ('{"messages": [{"content": "hi"}]}', r"messages\[0\]\.role"),
        ('{"messages": [{"role": 3, "content": "hi"}]}', r"messages\[0\]\.role"),
        ('{"messages": [{"role": "user", "content": 5}]}', r"messages\[0\]\.content"),
        ('{"messages": [{"role": "user"}]}', r"messages\[0\]\.content"),
        ('{"messages": [{"role": "assistant", "content": null}]}', r"messages\[0\]\.content"),
        ('{"messages": [{"role": "user", "content": [{"text": "x"}]}]}', r"messages\[0\]\.content\[0\]"),
        ('{"messages": [{"role": "assistant", "content": "", "tool_calls": "x"}]}', r"messages\[0\]\.tool_calls"),
        ('{"messages": [], "images": "abc"}', "`images`"),
        ('{"messages": [], "images": [1]}', r"images\[0\]"),
        ('{"messages": [], "images": ["not base64!"]}', r"images\[0\] is not valid base64"),
        ('{"messages": [], "videos": [{"frames": []}]}', r"videos\[0\]\.fps"),
        ('{"messages": [], "videos": [{"fps": 1, "frames": "x"}]}', r"videos\[0\]\.frames"),
        ('{"messages": [], "files": [{"name": "a"}]}', r"files\[0\]"),
        ('{"messages": [], "files": [{"id": "f", "name": "a", "source": {"tool": 1}}]}', r"files\[0\]"),
        ('{"messages": [], "plugin_state": []}', "plugin_state"),
        ('{"messages": [], "plugin_state": {"p": 3}}', r"plugin_state\['p'\]"),
        ('{"messages": [], "approved_tools": "shell"}', "approved_tools"),
        ('{"messages": [], "created_at": "yesterday"}', "created_at"),
        ('{"messages": [], "id": ""}', "`id`"),
    ],
)
def test_bad_json_names_the_problem(payload, field):
    with pytest.raises(ValueError, match=field) as info:
        Session.from_json(payload)
    assert isinstance(info.value, SessionError)
    assert str(info.value).startswith("Failed to parse session JSON: ")


def test_assistant_tool_call_message_may_have_null_content():
    msg = {"role": "assistant", "content": None, "tool_calls": TC1["tool_calls"]}
    s = Session.from_json({"messages": [U1, msg, T1]})
    assert s.messages[1]["content"] is None


def test_video_defaults_filled():
    s = Session.from_json({"messages": [], "videos": [{"fps": 4, "frames": [PNG, PNG]}]})
    assert s.videos[0]["total_num_frames"] == 2 and s.videos[0]["sampled_indices"] == [0, 1]


def test_non_json_input_type_is_type_error():
    with pytest.raises(TypeError, match="JSON text, bytes or a dict"):
        Session.from_json(42)  # type: ignore[arg-type]


def test_new_session_and_copy():
    s = Session.new(messages=[U1])
    assert len(s.id) == 36 and s.messages == [U1] and s.messages[0] is not U1
    c = s.copy()
    c.messages.append(A1)
    c.approved_tools.add("x")
    assert s.messages == [U1] and s.approved_tools == set()
    with pytest.raises(ValueError, match="id"):
        Session("")


# --- plugin state -----------------------------------------------------------------------------


def test_plugin_state_store_put_get_round_trip():
    s = Session("p")
    store = PluginStateStore(s, "memo")
    assert store.get("missing", 7) == 7
    store.put("notes", ("a", "b"))  # tuple is JSON round-tripped to a list
    store.put("cfg", {"k": 1.5, "n": None})
    assert s.plugin_state == {"memo": {"notes": ["a", "b"], "cfg": {"k": 1.5, "n": None}}}
    got = store.get("cfg")
    got["k"] = 0  # a copy
    assert store.get("cfg") == {"k": 1.5, "n": None}
    assert "notes" in store and sorted(store.keys()) == ["cfg", "notes"]
    back = Session.from_json(s.to_json_str())
    assert PluginStateStore(back, "memo").get("notes") == ["a", "b"]
    assert PluginStateStore(back, "other").get("notes") is None
    assert store.delete("notes") and not store.delete("notes")


@pytest.mark.parametrize("value", [object(), {1, 2}, {"x": b"bytes"}, float("nan")])
def test_plugin_state_rejects_non_json_values(value):
    store = PluginStateStore(Session("p"), "memo")
    with pytest.raises(TypeError, match="'bad_key'"):
        store.put("bad_key", value)
    assert store.get("bad_key") is None


# --- message helpers --------------------------------------------------------------------------


def test_visible_messages_drops_tool_traffic():
    assert visible_messages([SYS, U1, TC1, T1, A1]) == [SYS, U1, A1]


def test_content_normalization_str_vs_text_part():
    as_parts = {"role": "user", "content": [{"type": "text", "text": "What is 2+3?"}]}
    assert messages_match(U1, as_parts)
    assert not messages_match(U1, {"role": "assistant", "content": "What is 2+3?"})
    assert not messages_match(U1, {"role": "user", "content": [{"type": "text", "text": "What is 2+"},
                                                                {"type": "text", "text": "3?"}]})
    img = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}},
                                       {"type": "text", "text": "What is 2+3?"}]}
    assert not messages_match(U1, img)


def test_tool_calls_compared_ignoring_ids_and_argument_encoding():
    client_copy = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "other", "type": "function", "function": {"name": "add", "arguments": '{"b": 3, "a": 2}'}}]}
    assert messages_match(TC1, client_copy)
    other = {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "add", "arguments": '{"a": 2, "b": 4}'}}]}
    assert not messages_match(TC1, other)


def test_find_by_prefix_matches_stored_visible_prefix():
    s_other = Session("other", [SYS, {"role": "user", "content": "different"}, A1])
    s_ok = Session("ok", [SYS, U1, TC1, T1, A1])
    incoming = [SYS, U1, A1, U2]
    assert find_session_by_prefix([s_other, s_ok], incoming) is s_ok
    # equal length also counts as a prefix (a resend)
    assert find_session_by_prefix([s_ok], [SYS, U1, A1]) is s_ok
    # text-part content matches a str
    incoming_parts = [SYS, {"role": "user", "content": [{"type": "text", "text": U1["content"]}]}, A1, U2]
    assert find_session_by_prefix([s_ok], incoming_parts) is s_ok
    # incoming tool traffic (client-side loop) does not prevent a match
    assert find_session_by_prefix([s_ok], [SYS, U1, TC1, T1, A1, U2]) is s_ok


def test_find_by_prefix_no_match_cases():
    s = Session("s", [SYS, U1, TC1, T1, A1])
    assert find_session_by_prefix([s], [SYS]) is None  # < 2 messages
    assert find_session_by_prefix([Session("u", [U1])], [U1]) is None  # < 2 even if it would match
    assert find_session_by_prefix([s], [SYS, U1]) is None  # stored longer than incoming
    assert find_session_by_prefix([s], [SYS, U2, A1, U3]) is None  # diverged
    assert find_session_by_prefix([Session("e", []), Session("t", [TC1, T1])], [SYS, U1]) is None  # nothing visible
    assert find_session_by_prefix([], [SYS, U1, A1]) is None


def test_find_by_prefix_returns_first_match():
    a = Session("a", [SYS, U1])
    b = Session("b", [SYS, U1, TC1, T1, A1])
    assert find_session_by_prefix([a, b], [SYS, U1, A1, U2]) is a
    assert find_session_by_prefix([b, a], [SYS, U1, A1, U2]) is b


def test_splice_restores_tool_messages():
    stored = [SYS, U1, TC1, T1, A1, U2, TC2, T2, A2]
    incoming = [SYS, U1, A1, U2, A2, U3]
    out = splice_history(stored, incoming)
    assert out == [SYS, U1, TC1, T1, A1, U2, TC2, T2, A2, U3]
    # copies, and the inputs are untouched
    out[2]["tool_calls"][0]["id"] = "mutated"
    assert TC1["tool_calls"][0]["id"] == "call_1"
    assert incoming == [SYS, U1, A1, U2, A2, U3]


def test_splice_divergence_stops_using_stored_history():
    stored = [SYS, U1, TC1, T1, A1, U2, TC2, T2, A2]
    edited = {"role": "user", "content": "And 6+6?"}
    out = splice_history(stored, [SYS, U1, A1, edited])
    assert out == [SYS, U1, TC1, T1, A1, edited]
    # divergence at the very first message: the incoming list as is
    assert splice_history(stored, [U3, A1]) == [U3, A1]


def test_splice_keeps_trailing_stored_tool_messages():
    # the stored turn ended in tool traffic after the last visible message the client resends
    stored = [SYS, U1, TC1, T1]
    out = splice_history(stored, [SYS, U1, {"role": "user", "content": "more"}])
    assert out == [SYS, U1, TC1, T1, {"role": "user", "content": "more"}]
    # incoming exhausted: hidden messages right after it are kept, later visible ones are not
    assert splice_history([SYS, U1, TC1, T1, A1], [SYS, U1]) == [SYS, U1, TC1, T1]


def test_splice_does_not_duplicate_echoed_tool_messages():
    stored = [SYS, U1, TC1, T1, A1]
    incoming = [SYS, U1, TC1, T1, A1, U2]
    assert splice_history(stored, incoming) == [SYS, U1, TC1, T1, A1, U2]


def test_splice_uses_normalized_content():
    stored = [SYS, U1, TC1, T1, A1]
    parts_u1 = {"role": "user", "content": [{"type": "text", "text": U1["content"]}]}
    assert splice_history(stored, [SYS, parts_u1, A1, U2]) == [SYS, U1, TC1, T1, A1, U2]


def test_splice_empty_inputs():
    assert splice_history([], [U1]) == [U1]
    assert splice_history([SYS, U1, TC1, T1], []) == []
