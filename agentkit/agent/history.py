"""How an agentic request's messages relate to the history stored in its session (§2.8).

Scope: `visible_messages` / `is_hidden_message` (what a client sees), `messages_match` (the same
turn, normalised), `find_session_by_prefix` (the lookup without a session id), `splice_history`
(mistral.rs' merge of stored tool messages into a resent history), and
`join_history(session_id, stored, incoming)`, which returns the message list the model sees for
the turn, and `classify_history` names the client style it recognised:

* ``"new"`` — nothing stored: the incoming messages as sent.
* ``"resend"`` — the incoming visible messages start with the stored visible history (an
  OpenAI-style client resending the whole conversation): mistral.rs' splice (`splice_history`)
  puts the stored tool calls and results back in place.
* ``"continue"`` — the incoming messages contain no assistant message, so they are only the new
  turn (a stateful client: OpenAI Responses' `previous_response_id`, `llm` conversations): the
  stored history followed by the incoming messages. A leading system message equal to the stored
  leading one is not repeated.
* ``"conflict"`` — the incoming messages carry assistant turns but diverge from the stored
  history (another conversation, or an edited one): `SessionConflictError`, and nothing is
  dropped or overwritten. To rewrite or fork a history on purpose, delete the session first or
  use a new `session_id` (`import_session(new, export_session(old))` copies it).

Non-goals: the `Session` value, its JSON format and `merge_turn` (`agentkit.sessions`; this
module works on message lists and never imports it), storing sessions (`agentkit.session_store`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any, Literal, Protocol, TypeVar

from agentkit.errors import SessionError
from agentkit.tools import decode_arguments

__all__ = [
    "HistoryMode",
    "SessionConflictError",
    "classify_history",
    "find_session_by_prefix",
    "history_digests",
    "is_hidden_message",
    "join_history",
    "messages_match",
    "splice_history",
    "visible_messages",
]

HistoryMode = Literal["new", "resend", "continue", "conflict"]


class _HasMessages(Protocol):
    messages: list[dict[str, Any]]


S = TypeVar("S", bound=_HasMessages)


# ---------------------------------------------------------------------------------------------
# Message comparison, content-matching lookup and the mistral.rs splice (§2.8)


def is_hidden_message(msg: dict[str, Any]) -> bool:
    """True for messages the client never sees: role "tool", or carrying non-empty `tool_calls`."""
    return msg.get("role") == "tool" or bool(msg.get("tool_calls"))


def visible_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user-visible messages: tool messages and assistant messages with tool_calls dropped."""
    return [m for m in messages if not is_hidden_message(m)]


def _norm_content(content: Any) -> Any:
    # A str and a list of text parts with the same texts compare equal; "" and None too.
    if content is None:
        return ()
    if isinstance(content, str):
        return (content,) if content else ()
    if isinstance(content, list):
        out: list[Any] = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                if part["text"]:
                    out.append(part["text"])
            else:
                out.append(("part", json.dumps(part, sort_keys=True, default=str)))
        return tuple(out)
    return ("other", json.dumps(content, sort_keys=True, default=str))


def _norm_tool_calls(calls: Any) -> Any:
    # Ids differ between the server's and a client's copy; arguments may be a JSON string or parsed.
    if not calls:
        return ()
    out = []
    for call in calls:
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        if not isinstance(fn, dict):
            fn = {}
        args = fn.get("arguments")
        try:
            args = decode_arguments(args)
        except ValueError:
            pass
        out.append(json.dumps([fn.get("name"), args], sort_keys=True, default=str))
    return tuple(out)


def _key(msg: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (msg.get("role"), _norm_content(msg.get("content")), _norm_tool_calls(msg.get("tool_calls")))


def messages_match(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two messages are the same turn: equal role, (normalized) content and tool_calls."""
    return _key(a) == _key(b)


def history_digests(messages: Iterable[dict[str, Any]]) -> list[str]:
    """One digest per prefix of the visible `messages` (the k-th covers the first k+1), equal for
    histories that `messages_match` message by message; an index key for the prefix lookup."""
    h = hashlib.sha256()
    out = []
    for msg in visible_messages(messages):
        h.update(json.dumps(_key(msg), default=str).encode() + b"\n")
        out.append(h.copy().hexdigest())
    return out


def find_session_by_prefix(sessions: Iterable[S], incoming: list[dict[str, Any]]) -> S | None:
    """The first session whose visible messages are a prefix of the visible `incoming` messages.

    Needs at least 2 incoming messages (system/user + assistant); sessions with no visible
    messages never match. Returns None when nothing matches.
    """
    if len(incoming) < 2:
        return None
    inc = [_key(m) for m in visible_messages(incoming)]
    for session in sessions:
        stored = [_key(m) for m in visible_messages(session.messages)]
        if stored and len(stored) <= len(inc) and stored == inc[: len(stored)]:
            return session
    return None


def splice_history(stored: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge a stored session's hidden tool messages back into an incoming message list (§2.8).

    Walks both lists: stored hidden messages (tool results, assistant-with-tool_calls) are copied
    in place; a visible stored message must match the next incoming one, else the conversation
    diverged and no more stored history is used. Hidden messages right after the last consumed
    stored message are kept; the remaining incoming messages are appended. A hidden incoming
    message equal to the stored one it meets (a client echoing tool messages back) is not
    duplicated. Returns a new list of copies; neither input is modified.
    """
    out: list[dict[str, Any]] = []
    i = j = 0
    while i < len(stored) and j < len(incoming):
        s, m = stored[i], incoming[j]
        if is_hidden_message(s):
            if is_hidden_message(m) and messages_match(s, m):
                j += 1
            out.append(copy.deepcopy(s))
            i += 1
        elif not is_hidden_message(m) and messages_match(s, m):
            out.append(copy.deepcopy(s))
            i += 1
            j += 1
        else:
            break  # diverged
    while i < len(stored) and is_hidden_message(stored[i]):
        out.append(copy.deepcopy(stored[i]))
        i += 1
    out.extend(copy.deepcopy(m) for m in incoming[j:])
    return out


# ---------------------------------------------------------------------------------------------
# Joining a request to its session


def _brief(msg: dict[str, Any] | None) -> str:
    if msg is None:
        return "(nothing)"
    content = msg.get("content")
    text = content if isinstance(content, str) else repr(content)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{msg.get('role')}: {text!r}"


class SessionConflictError(SessionError):
    """The request resends a history that differs from the one stored under its `session_id`.

    `session_id` and `index` (the first differing visible message) are attributes; the message
    shows both differing messages and the ways to go on.
    """

    def __init__(self, session_id: str, index: int, stored: dict[str, Any] | None,
                 incoming: dict[str, Any] | None) -> None:
        super().__init__(
            f"session {session_id!r}: the request's messages carry an earlier conversation that differs from "
            f"the stored one at visible message {index} (counting from 0, tool traffic excluded; stored {_brief(stored)}, request {_brief(incoming)}). "
            "Nothing was changed. To continue the session send only the new message(s) (no assistant "
            "messages) or the whole stored history followed by them; to replace or fork the history, "
            "delete the session first (Runner.delete_session) or use a new session_id "
            "(import_session(new_id, export_session(old_id)) copies it)."
        )
        self.session_id = session_id
        self.index = index
        self._args = (session_id, index, stored, incoming)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._args)


def _extends(stored_visible: list[dict[str, Any]], incoming_visible: list[dict[str, Any]]) -> int | None:
    """None when `incoming_visible` starts with `stored_visible`, else the first differing index."""
    for k, s in enumerate(stored_visible):
        if k >= len(incoming_visible) or not messages_match(s, incoming_visible[k]):
            return k
    return None


def classify_history(stored: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> HistoryMode:
    """Which client style `incoming` is relative to the `stored` history (see the module doc)."""
    if not stored:
        return "new"
    if _extends(visible_messages(stored), visible_messages(incoming)) is None:
        return "resend"
    if not any(m.get("role") == "assistant" for m in incoming):
        return "continue"
    return "conflict"


def join_history(session_id: str, stored: list[dict[str, Any]],
                 incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of this turn: `incoming` joined to the `stored` history of `session_id`.

    Returns new copies (neither input is modified); every stored message is kept except when the
    client resent the history itself ("resend": the client's copies replace the stored visible
    ones they match). Raises `SessionConflictError` for a diverging resent history.
    """
    mode = classify_history(stored, incoming)
    if mode == "new":
        return copy.deepcopy(incoming)
    if mode == "resend":
        return splice_history(stored, incoming)
    if mode == "continue":
        new = list(incoming)
        lead = 0
        while (lead < len(stored) and lead < len(new) and stored[lead].get("role") == "system"
               and messages_match(stored[lead], new[lead])):
            lead += 1
        return copy.deepcopy(stored) + copy.deepcopy(new[lead:])
    stored_visible = visible_messages(stored)
    incoming_visible = visible_messages(incoming)
    index = _extends(stored_visible, incoming_visible)
    assert index is not None
    raise SessionConflictError(
        session_id, index, stored_visible[index] if index < len(stored_visible) else None,
        incoming_visible[index] if index < len(incoming_visible) else None)
