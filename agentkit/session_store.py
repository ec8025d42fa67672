"""Session stores: where agentic sessions live between turns (runner-api.md §2.8).

Scope:

* `SessionStore` — the abstract interface (`get`, `put`, `delete`, `ids`, `sessions`, `update`,
  `close`) plus helpers the Runner's session methods map onto one-to-one (`export_json`,
  `import_json`, `find_by_prefix`).
* `MemorySessionStore` — mistral.rs' behaviour: in memory, at most `max_sessions` (LRU by last
  access), `idle_ttl_s` idle expiry checked on access, thread-safe, deep copies in and out.
* `DirectorySessionStore` — one `<id>.json` per session in a directory, shared safely between
  threads and processes: atomic writes (temp file + fsync + `os.replace` + directory fsync), a
  `filelock` lock per session for writes and read-modify-write (`update`), and corrupt files
  moved to `<dir>/quarantine/` (never deleted) with `SessionCorruptError`.
* `open_session_store(spec)` — None / path / store → store.

Non-goals: expiry of persisted sessions (a directory store keeps them until deleted), the agent
loop's lookup policy, encryption, and remote/database backends (subclass `SessionStore`).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

import filelock

from agentkit.errors import SessionError
from agentkit.sessions import Session, find_session_by_prefix

__all__ = [
    "MAX_SESSION_ID_CHARS",
    "DirectorySessionStore",
    "MemorySessionStore",
    "SessionCorruptError",
    "SessionStore",
    "check_session_id",
    "open_session_store",
]

logger = logging.getLogger(__name__)

MAX_SESSION_ID_CHARS = 128
_MAX_FILE_STEM_BYTES = 200
_LOCK_POLL_S = 0.002  # filelock polls a non-blocking flock; its 50 ms default serializes writers slowly
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
        result = _apply(session_id, fn, session)
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


def _apply(session_id: str, fn: UpdateFn, session: Session) -> Session:
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
            result = _apply(session_id, fn, found.copy() if found is not None else Session(session_id))
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


def _file_stem(session_id: str) -> str:
    # Percent-encode everything outside [A-Za-z0-9_.-~] (so '/', '\\', '%' and ':' are safe and the
    # mapping is reversible), and a leading '.' so no id maps to '.', '..' or a hidden/temp file.
    stem = quote(session_id, safe="")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    return stem


class DirectorySessionStore(SessionStore):
    """Sessions as `<dir>/<id>.json` files, safe to share between threads and processes.

    Ids are percent-encoded into file names (any `check_session_id` id whose encoded name fits in
    200 bytes works). Writes go to a temp file in the same directory, are flushed and fsynced,
    `os.replace`d over the target and the directory is fsynced, so readers never see a torn file
    and a crash leaves either the old or the new version. Writers of one session serialize on a
    `filelock` lock in `<dir>/.locks/`; `update` holds it across read-modify-write. A file that
    does not parse is moved to `<dir>/quarantine/<name>.<timestamp>` and `get` raises
    `SessionCorruptError`. No expiry: sessions stay until deleted.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0) -> None:
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ValueError(f"DirectorySessionStore: `path` must be a non-empty directory path, got {path!r}")
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        if not os.path.isdir(self.path):
            raise ValueError(f"DirectorySessionStore: {self.path!r} is not a directory")
        self.lock_dir = os.path.join(self.path, ".locks")
        self.quarantine_dir = os.path.join(self.path, "quarantine")
        os.makedirs(self.lock_dir, exist_ok=True)
        self.lock_timeout_s = float(lock_timeout_s)
        self._locks: dict[str, filelock.BaseFileLock] = {}
        self._locks_guard = threading.Lock()

    # -- paths and locks ------------------------------------------------------------------------

    def file_path(self, session_id: str) -> str:
        """The JSON file of `session_id` (ValueError for an id this store cannot hold)."""
        stem = _file_stem(check_session_id(session_id))
        if len(stem.encode()) > _MAX_FILE_STEM_BYTES:
            raise ValueError(f"session id {session_id[:40]!r}... is too long once encoded as a file name "
                             f"({len(stem.encode())} > {_MAX_FILE_STEM_BYTES} bytes); use a shorter or ASCII id")
        return os.path.join(self.path, stem + ".json")

    def _lock(self, session_id: str) -> filelock.BaseFileLock:
        stem = os.path.basename(self.file_path(session_id))[: -len(".json")]
        with self._locks_guard:
            lock = self._locks.get(stem)
            if lock is None:
                # One object per file: reentrant within a thread, and each thread gets its own
                # OS-level lock (thread_local), so threads exclude each other like processes do.
                lock = self._locks[stem] = filelock.FileLock(
                    os.path.join(self.lock_dir, stem + ".lock"), timeout=self.lock_timeout_s
                )
        return lock

    @contextlib.contextmanager
    def locked(self, session_id: str) -> Iterator[None]:
        """Hold the cross-process lock of `session_id` (SessionError on timeout)."""
        lock = self._lock(session_id)
        try:
            lock.acquire(poll_interval=_LOCK_POLL_S)
        except filelock.Timeout:
            raise SessionError(f"timed out after {self.lock_timeout_s} s waiting for the lock of session "
                               f"{session_id!r} ({lock.lock_file}); another process holds it") from None
        try:
            yield
        finally:
            lock.release()

    def _fsync_dir(self) -> None:
        if os.name == "nt":  # directories cannot be opened for fsync on Windows
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading --------------------------------------------------------------------------------

    def _read(self, session_id: str) -> bytes | None:
        try:
            with open(self.file_path(session_id), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _quarantine(self, session_id: str, reason: str) -> SessionCorruptError:
        src = self.file_path(session_id)
        os.makedirs(self.quarantine_dir, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
        dst = os.path.join(self.quarantine_dir, f"{os.path.basename(src)}.{stamp}")
        n = 0
        while os.path.exists(dst):
            n += 1
            dst = os.path.join(self.quarantine_dir, f"{os.path.basename(src)}.{stamp}-{n}")
        os.replace(src, dst)
        self._fsync_dir()
        logger.warning("session %r: corrupt file %s moved to %s (%s)", session_id, src, dst, reason)
        return SessionCorruptError(session_id, dst, reason)

    def _load(self, session_id: str, *, locked: bool) -> Session | None:
        data = self._read(session_id)
        if data is None:
            return None
        try:
            return Session.from_json(data, session_id=session_id)
        except (ValueError, TypeError) as exc:
            if not locked:
                # Writes are atomic so this is not a torn write; re-check under the lock so a
                # file replaced meanwhile by a writer is never quarantined.
                with self.locked(session_id):
                    return self._load(session_id, locked=True)
            raise self._quarantine(session_id, str(exc)) from None

    def get(self, session_id: str) -> Session | None:
        """The session, or None if absent. A corrupt file is quarantined and `SessionCorruptError`
        raised (the session is absent afterwards)."""
        return self._load(session_id, locked=False)

    # -- writing --------------------------------------------------------------------------------

    def _write(self, session: Session) -> None:
        target = self.file_path(session.id)
        data = session.to_json_str().encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir()

    def put(self, session: Session) -> None:
        """Write `session` atomically under its lock (replaces any same-id session)."""
        if not isinstance(session, Session):
            raise TypeError(f"put expects a Session, got {type(session).__name__}")
        with self.locked(session.id):
            self._write(session)

    def update(self, session_id: str, fn: UpdateFn) -> Session:
        """Read-modify-write under the session's cross-process lock: no concurrent `put`/`update`
        of this id (in any process using this directory) can interleave or be lost. A corrupt
        stored file raises `SessionCorruptError` (after quarantine) and `fn` is not called."""
        with self.locked(session_id):
            session = self._load(session_id, locked=True) or Session(session_id)
            result = _apply(session_id, fn, session)
            self._write(result)
            return result

    def delete(self, session_id: str) -> bool:
        """Remove the session's file under its lock; returns whether it existed."""
        with self.locked(session_id):
            try:
                os.unlink(self.file_path(session_id))
            except FileNotFoundError:
                return False
            self._fsync_dir()
            return True

    # -- listing --------------------------------------------------------------------------------

    def _entries(self) -> list[tuple[float, str]]:
        out = []
        with os.scandir(self.path) as it:
            for entry in it:
                name = entry.name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                out.append((mtime, unquote(name[: -len(".json")])))
        out.sort(key=lambda e: (-e[0], e[1]))
        return out

    def ids(self) -> list[str]:
        """Stored session ids (from `*.json` names; temp files and quarantine excluded), most
        recently written first."""
        return [sid for _, sid in self._entries()]

    def sessions(self) -> Iterator[Session]:
        """Every readable session, most recently written first; corrupt files are quarantined and
        skipped with a warning, files deleted meanwhile are skipped."""
        for sid in self.ids():
            try:
                session = self.get(sid)
            except SessionCorruptError as exc:
                logger.warning("skipping session %r: %s", sid, exc)
                continue
            if session is not None:
                yield session

    def close(self) -> None:
        """Forget the cached lock objects (files stay)."""
        with self._locks_guard:
            self._locks.clear()

    def __repr__(self) -> str:
        return f"DirectorySessionStore({self.path!r})"


def open_session_store(spec: SessionStore | str | os.PathLike[str] | None) -> SessionStore:
    """None → `MemorySessionStore()`; a path → `DirectorySessionStore(path)`; a store → itself."""
    if spec is None:
        return MemorySessionStore()
    if isinstance(spec, SessionStore):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return DirectorySessionStore(spec)
    raise TypeError(f"session_store must be None, a directory path or a SessionStore, got {type(spec).__name__} "
                    f"{spec!r}")
