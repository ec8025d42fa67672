"""`DirectorySessionStore`: agentic sessions as one JSON file each in a shared directory.

Scope: `open_session_store(spec)` (None / path / store → store) and `<dir>/<id>.json` files shared safely between threads and processes: atomic writes (temp
file + fsync + `os.replace` + directory fsync), a `filelock` lock per session for writes and
read-modify-write (`update`), corrupt files moved to `<dir>/quarantine/` (never deleted) with
`SessionCorruptError`, files of a newer format left in place with `SessionVersionError`,
temp files orphaned by a killed writer swept when the store opens (`stale_temp_s`), and a
per-process digest index that keeps `find_by_prefix` from parsing every file per request.

Non-goals: expiry of sessions (they stay until deleted), the session format (`agentkit.sessions`),
the in-memory store and the store interface (`agentkit.session_store`), encryption.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import filelock

from agentkit.agent.history import find_session_by_prefix, history_digests
from agentkit.errors import SessionError
from agentkit.session_store import (
    MemorySessionStore,
    SessionCorruptError,
    SessionStore,
    UpdateFn,
    apply_update,
    check_session_id,
)
from agentkit.sessions import Session, SessionVersionError

__all__ = ["DEFAULT_STALE_TEMP_S", "DirectorySessionStore", "open_session_store"]

logger = logging.getLogger("agentkit.session_store")

DEFAULT_STALE_TEMP_S = 300.0
_MAX_FILE_STEM_BYTES = 200
_LOCK_POLL_S = 0.002  # filelock polls a non-blocking flock; its 50 ms default serializes writers slowly
# `_write`'s temp names: mkstemp(prefix=".<stem>.json.", suffix=".tmp") adds 8 chars of [a-z0-9_].
_TEMP_NAME = re.compile(r"\..+\.json\.[a-z0-9_]{8}\.tmp")


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
    `SessionCorruptError`; a file of a newer format raises `SessionVersionError` and stays. No
    expiry: sessions stay until deleted.

    `stale_temp_s`: temp files (`.<id>.json.<random>.tmp`) a killed writer left behind are deleted
    when the store opens if not modified for that many seconds (default 300; None: never). A live
    writer's temp file exists only between its write and its rename, so it is never that old.
    """

    def __init__(self, path: str | os.PathLike[str], lock_timeout_s: float = 30.0,
                 stale_temp_s: float | None = DEFAULT_STALE_TEMP_S) -> None:
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
        self._digests: dict[str, tuple[tuple[int, int, int], str | None]] = {}  # find_by_prefix index
        self._digest_guard = threading.Lock()
        if stale_temp_s is not None:
            self.sweep_temp_files(stale_temp_s)

    def sweep_temp_files(self, older_than_s: float = DEFAULT_STALE_TEMP_S) -> list[str]:
        """Delete this store's temp files not modified for `older_than_s` seconds (left by a writer
        killed between its write and its rename); returns the deleted paths."""
        if isinstance(older_than_s, bool) or not isinstance(older_than_s, (int, float)) or not older_than_s >= 0:
            raise ValueError(f"DirectorySessionStore: `stale_temp_s`/`older_than_s` must be a number of seconds >= 0 or None, "
                             f"got {older_than_s!r}")
        cutoff = time.time() - older_than_s
        swept = []
        with os.scandir(self.path) as it:
            for entry in it:
                if not _TEMP_NAME.fullmatch(entry.name):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        swept.append(entry.path)
                except FileNotFoundError:  # its writer renamed it, or another process swept it
                    continue
        if swept:
            logger.warning("removed %d stale temp file(s) left by interrupted writes in %s", len(swept), self.path)
        return swept

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
        except SessionVersionError as exc:
            # Written by a newer agentkit sharing this directory (a rolling upgrade): not corrupt.
            raise SessionVersionError(exc.version, f"session {session_id!r} ({self.file_path(session_id)}, "
                                                   "left in place)") from None
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
            result = apply_update(session_id, fn, session)
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

    def _entries(self) -> list[tuple[float, str, tuple[int, int, int]]]:
        # (mtime, id, signature): os.replace gives every write a new inode, so the signature
        # (inode, mtime_ns, size) changes whenever the file does.
        out = []
        with os.scandir(self.path) as it:
            for entry in it:
                name = entry.name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, unquote(name[: -len(".json")]), (st.st_ino, st.st_mtime_ns, st.st_size)))
        out.sort(key=lambda e: (-e[0], e[1]))
        return out

    def ids(self) -> list[str]:
        """Stored session ids (from `*.json` names; temp files and quarantine excluded), most
        recently written first."""
        return [sid for _, sid, _ in self._entries()]

    def sessions(self) -> Iterator[Session]:
        """Every readable session, most recently written first; corrupt files are quarantined and
        skipped with a warning, files deleted meanwhile are skipped."""
        for sid in self.ids():
            try:
                session = self.get(sid)
            except (SessionCorruptError, SessionVersionError) as exc:
                logger.warning("skipping session %r: %s", sid, exc)
                continue
            if session is not None:
                yield session

    def find_by_prefix(self, incoming: list[dict[str, Any]]) -> Session | None:
        """The most recently written session whose visible messages are a prefix of `incoming`'s
        (§2.8). Each file is parsed once per version: its history digest is cached by inode,
        mtime and size, so a lookup parses only the candidates whose digest matches."""
        if len(incoming) < 2:
            return None
        wanted = set(history_digests(incoming))
        entries = self._entries()
        with self._digest_guard:
            live = {sid for _, sid, _ in entries}
            for sid in [sid for sid in self._digests if sid not in live]:
                del self._digests[sid]
        for _, sid, signature in entries:
            with self._digest_guard:
                cached = self._digests.get(sid)
            session = None
            if cached is None or cached[0] != signature:
                session = self._get_quietly(sid)
                if session is None:  # deleted meanwhile, corrupt or newer
                    continue
                digests = history_digests(session.messages)
                cached = (signature, digests[-1] if digests else None)
                with self._digest_guard:
                    self._digests[sid] = cached
            if cached[1] is None or cached[1] not in wanted:
                continue
            session = session or self._get_quietly(sid)
            if session is not None and find_session_by_prefix([session], incoming) is not None:
                return session  # verified: a digest match alone is not trusted
        return None

    def _get_quietly(self, session_id: str) -> Session | None:
        try:
            return self.get(session_id)
        except (SessionCorruptError, SessionVersionError) as exc:
            logger.warning("skipping session %r: %s", session_id, exc)
            return None

    def close(self) -> None:
        """Forget the cached lock objects and digests (files stay)."""
        with self._locks_guard:
            self._locks.clear()
        with self._digest_guard:
            self._digests.clear()

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
