"""How an agentic request's messages join the history stored in its session.

Scope: `join_history(session_id, stored, incoming)` returns the message list the model sees for
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

Non-goals: finding the session (explicit id or `find_session_by_prefix`), storing it, and the
message normalisation (`agentkit.sessions`).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from agentkit.errors import SessionError
from agentkit.sessions import messages_match, splice_history, visible_messages

__all__ = ["HistoryMode", "SessionConflictError", "classify_history", "join_history"]

HistoryMode = Literal["new", "resend", "continue", "conflict"]


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
            f"the stored one at visible message {index} (stored {_brief(stored)}, request {_brief(incoming)}). "
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
