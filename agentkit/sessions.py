"""Agentic sessions: the `Session` value, its JSON format, plugin state and the history helpers.

Scope (runner-api.md §2.8):

* `Session` — one agentic conversation: the expanded message list (with the tool messages the
  client never sees), images/videos/files from tool results, per-plugin state and the tools the
  user approved "for the session". `Session.to_json()` is the mistral.rs `SerializedSession`
  export shape (`messages`, `images`, `videos`, `files`) plus agentkit fields (`version`, `id`,
  `plugin_state`, `approved_tools`, `created_at`, `updated_at`); `Session.from_json()` validates,
  migrates a version-less mistral.rs export (format version 0) and refuses newer formats.
* `PluginStateStore` — a plugin's JSON-safe key/value view of `Session.plugin_state`.
* `merge_turn` — the session to store when two turns on one id ran concurrently (both are kept).
* `visible_messages`, `find_session_by_prefix`, `splice_history` are re-exported from
  `agentkit.agent.history` (how a request's messages relate to a stored history).

Non-goals: storing sessions (agentkit.session_store), running the agent loop, decoding images or
videos (they stay base64 text here), and TTL/LRU policy.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agentkit.agent.history import (
    find_session_by_prefix,
    is_hidden_message,
    messages_match,
    splice_history,
    visible_messages,
)
from agentkit.api.files import File
from agentkit.errors import SessionError

__all__ = [
    "SESSION_FORMAT_VERSION",
    "PluginStateStore",
    "Session",
    "SessionVersionError",
    "find_session_by_prefix",
    "is_hidden_message",
    "merge_turn",
    "messages_match",
    "new_session_id",
    "splice_history",
    "visible_messages",
]

SESSION_FORMAT_VERSION = 1
_PARSE_PREFIX = "Failed to parse session JSON: "


class SessionVersionError(SessionError):
    """A session was written in a newer format than this agentkit reads (`version`, `supported`).

    Not corruption: a store leaves such a file in place for the newer process that wrote it.
    """

    def __init__(self, version: int, where: str = "") -> None:
        super().__init__(f"{where + ': ' if where else ''}session format version {version} is newer than this "
                         f"agentkit supports ({SESSION_FORMAT_VERSION}); upgrade agentkit to read it")
        self.version, self.supported, self.where = version, SESSION_FORMAT_VERSION, where

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.version, self.where))


def new_session_id() -> str:
    """A fresh session id (a UUID4 string, as mistral.rs uses)."""
    return str(uuid.uuid4())


def _bad(message: str) -> SessionError:
    # SessionError subclasses ValueError; the prefix is mistral.rs' import_session wording.
    return SessionError(_PARSE_PREFIX + message)


def _json_safe(value: Any, what: str) -> Any:
    """Return a JSON round-tripped deep copy of `value`, or raise TypeError naming `what`."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable (dicts with str keys, lists, str, int, "
                        f"float, bool, None; no NaN/inf), got {type(value).__name__}: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class Session:
    """One agentic session (runner-api.md §2.8).

    `messages` is the full expanded history (tool messages and assistant messages with
    `tool_calls` included); `images` are base64 PNGs and `videos` are
    `{"fps", "frames", "total_num_frames", "sampled_indices"}` dicts re-attached to the next
    request; `files` are `File.to_dict()` entries; `plugin_state` maps a plugin name to that
    plugin's JSON-safe dict (use `PluginStateStore`); `approved_tools` are the tool names approved
    with `remember_for_session`. Timestamps are `time.time()` seconds.
    """

    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    plugin_state: dict[str, Any] = field(default_factory=dict)
    approved_tools: set[str] = field(default_factory=set)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Session: `id` must be a non-empty str, got {self.id!r}")
        if not isinstance(self.approved_tools, set):
            self.approved_tools = set(self.approved_tools)

    @classmethod
    def new(cls, session_id: str | None = None, messages: list[dict[str, Any]] | None = None) -> Session:
        """A new session under `session_id` (a fresh UUID4 when None) holding a copy of `messages`."""
        return cls(session_id or new_session_id(), copy.deepcopy(messages) if messages else [])

    def touch(self) -> None:
        """Set `updated_at` to now (call after changing the session)."""
        self.updated_at = time.time()

    def copy(self) -> Session:
        """A deep copy (changes to it do not affect this session)."""
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        """The export object: §2.8 `SerializedSession` fields plus agentkit's (a deep copy)."""
        return {
            "version": SESSION_FORMAT_VERSION,
            "id": self.id,
            "messages": copy.deepcopy(self.messages),
            "images": list(self.images),
            "videos": copy.deepcopy(self.videos),
            "files": copy.deepcopy(self.files),
            "plugin_state": copy.deepcopy(self.plugin_state),
            "approved_tools": sorted(self.approved_tools),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_json_str(self, indent: int | None = None) -> str:
        """`to_json()` as JSON text (what `Runner.export_session` returns)."""
        return json.dumps(self.to_json(), ensure_ascii=False, indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, obj: str | bytes | dict[str, Any], session_id: str | None = None) -> Session:
        """Parse and validate an exported session (JSON text or an already parsed object).

        `session_id` overrides the stored `id` (import under a new id); without either a fresh
        UUID4 is used. A version-less object is a mistral.rs `SerializedSession` (format 0) and is
        migrated; a newer format is refused. Raises `SessionError` (a `ValueError`) naming the bad
        field; the input object is never aliased.
        """
        if isinstance(obj, (bytes, bytearray)):
            try:
                obj = bytes(obj).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad(f"not UTF-8 text ({exc})") from None
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise _bad(f"invalid JSON: {exc}") from None
        elif isinstance(obj, dict):
            obj = copy.deepcopy(obj)
        else:
            raise TypeError(f"Session.from_json: expected JSON text, bytes or a dict, got {type(obj).__name__}")
        if not isinstance(obj, dict):
            raise _bad(f"the top level must be a JSON object, got {type(obj).__name__}")

        version = obj.get("version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise _bad(f"`version` must be an integer format version, got {version!r}")
        if version > SESSION_FORMAT_VERSION:
            raise SessionVersionError(version)
        if version < 0:
            raise _bad(f"`version` must be >= 0, got {version}")
        # Format 0 (mistral.rs SerializedSession: messages, images, videos[, files]) migrates by
        # filling agentkit's fields with defaults; format 1 is read as is. Both share validation.

        if session_id is None:
            session_id = obj.get("id")
            if session_id is None:
                session_id = new_session_id()
        if not isinstance(session_id, str) or not session_id:
            raise _bad(f"`id` must be a non-empty string, got {session_id!r}")

        now = time.time()
        created_at: Any = obj.get("created_at", now)
        updated_at: Any = obj.get("updated_at", created_at)
        for name, value in (("created_at", created_at), ("updated_at", updated_at)):
            if not _is_number(value):
                raise _bad(f"`{name}` must be a number (seconds since the epoch), got {value!r}")

        approved = obj.get("approved_tools", [])
        if not isinstance(approved, list) or not all(isinstance(t, str) for t in approved):
            raise _bad(f"`approved_tools` must be a list of tool names (strings), got {approved!r}")

        plugin_state = obj.get("plugin_state", {})
        if not isinstance(plugin_state, dict):
            raise _bad(f"`plugin_state` must be an object, got {type(plugin_state).__name__}")
        for name, state in plugin_state.items():
            if not isinstance(state, dict):
                raise _bad(f"`plugin_state[{name!r}]` must be an object, got {type(state).__name__}")
        try:
            _json_safe(plugin_state, "plugin_state")
        except TypeError as exc:
            raise _bad(str(exc)) from None

        return cls(
            id=session_id,
            messages=_check_messages(obj.get("messages")),
            images=_check_images(obj.get("images", [])),
            videos=_check_videos(obj.get("videos", [])),
            files=_check_files(obj.get("files", [])),
            plugin_state=plugin_state,
            approved_tools=set(approved),
            created_at=float(created_at),
            updated_at=float(updated_at),
        )


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise _bad("missing field `messages` (a list of chat messages)")
    if not isinstance(messages, list):
        raise _bad(f"`messages` must be a list, got {type(messages).__name__}")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object, got {type(msg).__name__}")
        role = msg.get("role")
        if not isinstance(role, str):
            raise _bad(f"{where}.role must be a string, got {role!r}")
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list) or not all(isinstance(c, dict) for c in tool_calls):
                raise _bad(f"{where}.tool_calls must be a list of objects, got {tool_calls!r}")
        content = msg.get("content")
        if content is None:
            if not (role == "assistant" and tool_calls):
                raise _bad(f"{where}.content is missing/null; only an assistant message with "
                           "tool_calls may omit it")
        elif isinstance(content, list):
            for k, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(f"{where}.content[{k}] must be an object with a string `type`, got {part!r}")
        elif not isinstance(content, str):
            raise _bad(f"{where}.content must be a string, a list of parts or null, got "
                       f"{type(content).__name__}")
        for key in ("name", "reasoning_content", "tool_call_id"):
            if msg.get(key) is not None and not isinstance(msg[key], str):
                raise _bad(f"{where}.{key} must be a string, got {msg[key]!r}")
    return messages


def _check_b64(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where} must be a base64 string, got {type(value).__name__}")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where} is not valid base64") from None
    return value


def _check_images(images: Any) -> list[str]:
    if not isinstance(images, list):
        raise _bad(f"`images` must be a list of base64 PNG strings, got {type(images).__name__}")
    return [_check_b64(img, f"images[{i}]") for i, img in enumerate(images)]


def _check_videos(videos: Any) -> list[dict[str, Any]]:
    if not isinstance(videos, list):
        raise _bad(f"`videos` must be a list of objects, got {type(videos).__name__}")
    for i, video in enumerate(videos):
        where = f"videos[{i}]"
        if not isinstance(video, dict):
            raise _bad(f"{where} must be an object with `fps` and `frames`, got {type(video).__name__}")
        if not _is_number(video.get("fps")):
            raise _bad(f"{where}.fps must be a number, got {video.get('fps')!r}")
        frames = video.get("frames")
        if not isinstance(frames, list):
            raise _bad(f"{where}.frames must be a list of base64 PNG strings, got {frames!r}")
        for k, frame in enumerate(frames):
            _check_b64(frame, f"{where}.frames[{k}]")
        total = video.setdefault("total_num_frames", len(frames))
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise _bad(f"{where}.total_num_frames must be a non-negative integer, got {total!r}")
        indices = video.setdefault("sampled_indices", list(range(len(frames))))
        if not isinstance(indices, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in indices
        ):
            raise _bad(f"{where}.sampled_indices must be a list of non-negative integers, got {indices!r}")
    return videos


def _check_files(files: Any) -> list[dict[str, Any]]:
    if not isinstance(files, list):
        raise _bad(f"`files` must be a list of file objects, got {type(files).__name__}")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not isinstance(
            entry.get("name"), str
        ):
            raise _bad(f"files[{i}] must be an object with string `id` and `name`, got {entry!r}")
        try:
            File.from_dict(entry)
        except (TypeError, ValueError) as exc:
            raise _bad(f"files[{i}]: {exc}") from None
    return files


class PluginStateStore:
    """A plugin's key/value view of `session.plugin_state[plugin_name]` (JSON-safe values only).

    Values are stored and returned as JSON round-tripped copies (tuples become lists), so what a
    plugin reads back after an export/import is exactly what it read before.
    """

    def __init__(self, session: Session, plugin_name: str) -> None:
        if not isinstance(plugin_name, str) or not plugin_name:
            raise ValueError(f"PluginStateStore: `plugin_name` must be a non-empty str, got {plugin_name!r}")
        self.session = session
        self.plugin_name = plugin_name

    def _state(self, create: bool) -> dict[str, Any] | None:
        state = self.session.plugin_state.get(self.plugin_name)
        if state is None and create:
            state = self.session.plugin_state[self.plugin_name] = {}
        return state

    def put(self, key: str, value: Any) -> None:
        """Store `value` under `key` (TypeError naming the key if it does not survive `json.dumps`)."""
        if not isinstance(key, str):
            raise TypeError(f"plugin state key must be a str, got {type(key).__name__} {key!r}")
        safe = _json_safe(value, f"plugin state value for key {key!r} (plugin {self.plugin_name!r})")
        state = self._state(create=True)
        assert state is not None
        state[key] = safe
        self.session.touch()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under `key` (a copy), or `default`."""
        state = self._state(create=False)
        if not state or key not in state:
            return default
        return copy.deepcopy(state[key])

    def delete(self, key: str) -> bool:
        """Remove `key`; returns whether it existed."""
        state = self._state(create=False)
        if not state or key not in state:
            return False
        del state[key]
        self.session.touch()
        return True

    def keys(self) -> list[str]:
        """The stored keys."""
        return list(self._state(create=False) or {})

    def __contains__(self, key: object) -> bool:
        return key in (self._state(create=False) or {})


def merge_turn(current: Session, ours: Session, base: list[dict[str, Any]]) -> Session:
    """The session to store after a turn that started from the stored messages `base`.

    `current` is the session stored now. If it changed since the turn started (a concurrent turn
    on the same id was saved first), its messages are kept and this turn's new messages appended
    after them; images, videos, files and approved tools are united and this turn's plugin state
    wins. Otherwise (unchanged, deleted meanwhile, or this turn's messages do not start with
    `base`) `ours` is stored as is.
    """
    if not current.messages or current.messages == base or ours.messages[: len(base)] != base:
        return ours
    merged = ours.copy()
    merged.messages = copy.deepcopy(current.messages) + merged.messages[len(base):]
    merged.images = current.images + [i for i in ours.images if i not in current.images]
    merged.videos = current.videos + [v for v in merged.videos if v not in current.videos]
    known = {f.get("id") for f in current.files}
    merged.files = current.files + [f for f in merged.files if f.get("id") not in known]
    merged.approved_tools |= current.approved_tools
    merged.created_at = min(current.created_at, ours.created_at)
    return merged
