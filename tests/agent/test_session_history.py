"""join_history: how a request's messages join its stored session (new, resend, continue, conflict)."""

from __future__ import annotations

import copy
import pickle

import pytest

from agentkit import SessionConflictError, SessionError
from agentkit.agent.history import classify_history, join_history


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


SYS = {"role": "system", "content": "Be brief."}
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
RESULT = {"role": "tool", "content": "rain", "tool_call_id": "c1"}
STORED = [SYS, u("Weather in Oslo?"), CALL, RESULT, a("Rain."), u("And Rome?"), a("Sunny.")]


def test_nothing_stored_is_the_incoming_messages():
    assert classify_history([], [u("hi")]) == "new"
    assert join_history("s", [], [u("hi")]) == [u("hi")]


def test_only_the_new_message_continues_the_stored_history():
    assert classify_history(STORED, [u("Thanks")]) == "continue"
    assert join_history("s", STORED, [u("Thanks")]) == STORED + [u("Thanks")]


def test_a_repeated_leading_system_message_is_not_duplicated_but_a_new_one_is_kept():
    assert join_history("s", STORED, [SYS, u("Thanks")]) == STORED + [u("Thanks")]
    other = {"role": "system", "content": "Answer in French."}
    assert join_history("s", STORED, [other, u("Merci")]) == STORED + [other, u("Merci")]


def test_new_messages_equal_to_the_first_stored_ones_still_continue():
    # A stateful client may say "hi" twice; without an assistant message it is always a new turn.
    stored = [u("hi"), a("hello")]
    assert join_history("s", stored, [u("hi")]) == [u("hi"), a("hello"), u("hi")]


def test_the_full_history_resent_is_spliced_not_duplicated():
    visible = [SYS, u("Weather in Oslo?"), a("Rain."), u("And Rome?"), a("Sunny.")]
    assert classify_history(STORED, visible + [u("Thanks")]) == "resend"
    assert join_history("s", STORED, visible + [u("Thanks")]) == STORED + [u("Thanks")]
    # a client that echoes the tool traffic back gets it once
    assert join_history("s", STORED, STORED + [u("Thanks")]) == STORED + [u("Thanks")]


def test_a_different_resent_history_is_a_conflict_naming_the_difference():
    edited = [SYS, u("Weather in Oslo?"), a("Snow."), u("Thanks")]
    assert classify_history(STORED, edited) == "conflict"
    with pytest.raises(SessionConflictError, match=r"session 's1'.*visible message 2.*'Rain\.'.*'Snow\.'") as info:
        join_history("s1", STORED, edited)
    err = info.value
    assert isinstance(err, SessionError) and isinstance(err, ValueError)
    assert (err.session_id, err.index) == ("s1", 2)
    assert "delete the session first" in str(err) and "new session_id" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), str(again), again.index) == (SessionConflictError, str(err), 2)


def test_a_shorter_resent_history_with_an_assistant_turn_is_a_conflict():
    # A client that truncated the conversation (regenerate an earlier answer) must not silently
    # drop the stored later turns.
    with pytest.raises(SessionConflictError, match="visible message 3"):
        join_history("s", STORED, [SYS, u("Weather in Oslo?"), a("Rain."), u("Something else?")])


def test_inputs_are_not_modified_and_results_are_copies():
    stored, incoming = copy.deepcopy(STORED), [u("Thanks")]
    out = join_history("s", stored, incoming)
    out[0]["content"] = "changed"
    out[-1]["content"] = "changed"
    assert stored == STORED and incoming == [u("Thanks")]


def test_merge_turn_keeps_a_concurrent_turn_saved_first():
    from agentkit.sessions import Session, merge_turn

    base = [u("q1"), a("a1")]
    theirs = Session("s", base + [u("q2"), a("a2")], images=["AAAA"], files=[{"id": "f1", "name": "x"}],
                     approved_tools={"t1"})
    ours = Session("s", base + [u("q3"), a("a3")], images=["AAAA", "BBBB"], files=[{"id": "f2", "name": "y"}],
                   approved_tools={"t2"}, plugin_state={"p": {"k": 1}})
    merged = merge_turn(theirs, ours, base)
    assert merged.messages == base + [u("q2"), a("a2"), u("q3"), a("a3")]
    assert merged.images == ["AAAA", "BBBB"] and [f["id"] for f in merged.files] == ["f1", "f2"]
    assert merged.approved_tools == {"t1", "t2"} and merged.plugin_state == {"p": {"k": 1}}
    assert ours.messages == base + [u("q3"), a("a3")]  # not modified
    assert merge_turn(Session("s", list(base)), ours, base) is ours  # nothing saved meanwhile
    assert merge_turn(Session("s"), ours, base) is ours  # deleted meanwhile
    assert merge_turn(theirs, Session("s", [u("other")]), base).messages == [u("other")]
