"""Session stores: where agentic sessions live between turns (runner-api.md §2.8).

Scope:

* `SessionStore` — the abstract interface (`get`, `put`, `delete`, `ids`, `sessions`, `update`,
  `close`) plus helpers the Runner's session methods map onto one-to-one (`export_json`,
  `import_json`, `find_by_prefix`).
* `MemorySessionStore` — mistral.rs' behaviour: in memory, at most `max_sessions` (LRU by last
  access), `idle_ttl_s` idle expiry checked on access, thread-safe, deep copies in and out.

The directory store (`DirectorySessionStore`) and `open_session_store(spec)` live in
`agentkit.session_directory`, which builds on this module (never the other way round).

Non-goals: expiry of persisted sessions (a directory store keeps them until deleted), the agent
loop's lookup policy, encryption, and remote/database backends (subclass `SessionStore`).
"""

from __future__ import annotations

import abc
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from agentkit.errors import SessionError
from agentkit.sessions import Session, find_session_by_prefix

__all__ = [
    "MAX_SESSION_ID_CHARS",
    "MemorySessionStore",
    "SessionCorruptError",
    "SessionStore",
    "check_session_id",
]

logger = logging.getLogger(__name__)

MAX_SESSION_ID_CHARS = 128
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

UpdateFn = Callable[[Session], "Session | None"]


class SessionCorruptError(SessionError):
    """A stored session file could not be parsed; it was moved to the store's quarantine folder.

    `session_id`, `quarantined_path` (where the untouched bytes now are) and `reason` (the parse
    error) are attributes; the message names all three.
    """

    def __init__(self, session_id: str, quarantined_path: str, reason: str) -> None:
        super().__init__(
            f"session {session_id!r} is corrupt ({reason}); its file was moved to {quarantined_path!r} "
            "(inspect or repair it there; the session is treated as absent)"
        )
        self.session_id = session_id
        self.quarantined_path = quarantined_path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.session_id, self.quarantined_path, self.reason))


def check_session_id(session_id: Any) -> str:
    """Return `session_id` if every store accepts it: a non-empty str of at most 128 characters
    without control characters (TypeError/ValueError otherwise)."""
    if not isinstance(session_id, str):
        raise TypeError(f"session id must be a str, got {type(session_id).__name__} {session_id!r}")
    if not session_id:
        raise ValueError("session id must not be empty")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise ValueError(f"session id must be at most {MAX_SESSION_ID_CHARS} characters, got "
                         f"{len(session_id)}: {session_id[:40]!r}...")
    if _CONTROL_CHARS.search(session_id):
        raise ValueError(f"session id must not contain control characters, got {session_id!r}")
    return session_id


class SessionStore(abc.ABC):
    """Where sessions are kept. Implementations return independent copies from `get`/`sessions`
    (mutating one changes nothing until `put`) and make `put` atomic.

    Runner mapping: `export_session` = `export_json`, `import_session` = `import_json`,
    `delete_session` = `delete`, `list_session_ids` = `ids`.
    """

    @abc.abstractmethod
    def get(self, session_id: str) -> Session | None:
        """The stored session (a copy), or None if absent/expired."""

    @abc.abstractmethod
    def put(self, session: Session) -> None:
        """Store (replace) `session` under `session.id`, atomically."""

    @abc.abstractmethod
    def delete(self, session_id: str) -> bool:
        """Remove a session; returns whether it existed."""

    @abc.abstractmethod
    def ids(self) -> list[str]:
        """The ids of the stored sessions."""

    @abc.abstractmethod
    def sessions(self) -> Iterator[Session]:
        """Every stored session (copies), most recently used first; unreadable ones are skipped
        with a logged warning."""

    def update(self, session_id: str, fn: UpdateFn) -> Session:
        """Read-modify-write: `fn` gets the stored session (or a new empty one under `session_id`),
        changes it in place or returns a replacement, and the result is stored. Implementations
        make this atomic against concurrent `put`/`update` of the same id. Returns the stored
        session (a copy). If `fn` raises, nothing is written."""
        session = self.get(session_id) or Session(check_session_id(session_id))
        result = apply_update(session_id, fn, session)
        self.put(result)
        return result.copy()

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release resources; the store must not be used afterwards."""

    def find_by_prefix(self, incoming: list[dict[str, Any]]) -> Session | None:
        """Content-matching lookup (§2.8, `find_session_by_prefix`) over `sessions()`."""
        found = find_session_by_prefix(self.sessions(), incoming)
        if found is None:
            return None
        return self.get(found.id) or found  # `get` refreshes last access where the store tracks it

    def export_json(self, session_id: str) -> str | None:
        """The session's export JSON text, or None if absent (`Runner.export_session`)."""
        session = self.get(session_id)
        return None if session is None else session.to_json_str()

    def import_json(self, session_id: str, session_json: str | bytes | dict[str, Any]) -> Session:
        """Parse `session_json` (SessionError, a ValueError, "Failed to parse session JSON: ...")
        and store it under `session_id`, replacing any same-id session (`Runner.import_session`)."""
        session = Session.from_json(session_json, session_id=check_session_id(session_id))
        self.put(session)
        return session

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.get(session_id) is not None

    def __len__(self) -> int:
        return len(self.ids())

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apply_update(session_id: str, fn: UpdateFn, session: Session) -> Session:
    """Run an `update` callback on `session` and check its result (for `SessionStore.update` implementations)."""
    result = fn(session)
    if result is None:
        result = session
    if not isinstance(result, Session):
        raise TypeError(f"update fn must return a Session or None, got {type(result).__name__}")
    if result.id != session_id:
        raise ValueError(f"update fn returned session {result.id!r} for id {session_id!r}")
    result.touch()
    return result


class MemorySessionStore(SessionStore):
    """In-memory store with mistral.rs' policy: at most `max_sessions` (least recently used evicted),
    sessions idle longer than `idle_ttl_s` expire (None = never). Thread-safe; stores and returns
    deep copies. `clock` (monotonic seconds) is injectable for tests."""

    def __init__(self, max_sessions: int = 128, idle_ttl_s: float | None = 1800.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"MemorySessionStore: `max_sessions` must be an int >= 1, got {max_sessions!r}")
        if idle_ttl_s is not None and (isinstance(idle_ttl_s, bool) or not isinstance(idle_ttl_s, (int, float))
                                       or idle_ttl_s <= 0):
            raise ValueError(f"MemorySessionStore: `idle_ttl_s` must be a number > 0 or None, got {idle_ttl_s!r}")
        self.max_sessions = max_sessions
        self.idle_ttl_s = None if idle_ttl_s is None else float(idle_ttl_s)
        self._clock = clock
        self._lock = threading.RLock()
        # id -> (session, last access); order = least recently used first.
        self._items: OrderedDict[str, tuple[Session, float]] = OrderedDict()

    def _expire(self, now: float) -> None:
        if self.idle_ttl_s is None:
            return
        for sid in [sid for sid, (_, seen) in self._items.items() if now - seen >= self.idle_ttl_s]:
            del self._items[sid]

    def _lookup(self, session_id: str) -> Session | None:
        now = self._clock()
        self._expire(now)
        item = self._items.get(session_id)
        if item is None:
            return None
        self._items[session_id] = (item[0], now)
        self._items.move_to_end(session_id)
        return item[0]

    def _store(self, session: Session) -> None:
        now = self._clock()
        self._expire(now)
        self._items[session.id] = (session, now)
        self._items.move_to_end(session.id)
        while len(self._items) > self.max_sessions:
            self._items.popitem(last=False)

    def get(self, session_id: str) -> Session | None:
        """The session (a deep copy) and refresh its last access; None if absent or expired."""
        with self._lock:
            found = self._lookup(session_id)
            return None if found is None else found.copy()

    def put(self, session: Session) -> None:
        """Store a deep copy of `session` (evicting the least recently used beyond `max_sessions`)."""
        if not isinstance(session, Session):
            raise TypeError(f"put expects a Session, got {type(session).__name__}")
        check_session_id(session.id)
        snapshot = session.copy()
        with self._lock:
            self._store(snapshot)

    def update(self, session_id: str, fn: UpdateFn) -> Session:
        """Atomic read-modify-write under the store lock (see `SessionStore.update`)."""
        check_session_id(session_id)
        with self._lock:
            found = self._lookup(session_id)
            result = apply_update(session_id, fn, found.copy() if found is not None else Session(session_id))
            self._store(result.copy())
            return result

    def delete(self, session_id: str) -> bool:
        """Remove a session; returns whether it existed (and had not expired)."""
        with self._lock:
            self._expire(self._clock())
            return self._items.pop(session_id, None) is not None

    def ids(self) -> list[str]:
        """Live session ids, most recently used first."""
        with self._lock:
            self._expire(self._clock())
            return list(reversed(self._items))

    def sessions(self) -> Iterator[Session]:
        """Copies of the live sessions, most recently used first (does not refresh last access)."""
        with self._lock:
            self._expire(self._clock())
            snapshot = [s for s, _ in reversed(self._items.values())]
        for session in snapshot:
            yield session.copy()

    def close(self) -> None:
        """Drop every session."""
        with self._lock:
            self._items.clear()
