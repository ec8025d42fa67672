"""`FileStore`: every file a Runner's agent turns received or produced, by id, with full bodies.

Scope: a thread-safe in-memory map `id -> File` (uploads from `request.input_files`, outputs
tools made through `ToolContext.add_file`), the session each file belongs to, and a byte cap
that evicts the oldest bodies first (the `File` metadata stays in the session's `files`).
`Runner.find_file(id)` reads it, then falls back to the session store (files of sessions saved
by an earlier process).

Non-goals: writing files to disk (tools do that in their work directory), eliding large bodies
from responses (`agentkit.agent.context`), the `File` type itself (`agentkit.api.files`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from agentkit.api.files import File

__all__ = ["DEFAULT_MAX_BYTES", "FileStore"]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class FileStore:
    """Files by id for one Runner; `put`, `get` and `for_session` may be called from any thread.

    `max_bytes` bounds the bodies held: past it, the oldest files are dropped from the store
    (a later `get` returns None for them unless the session store still has them).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"FileStore max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, tuple[File, str | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, file: File, session_id: str | None = None) -> File:
        """Store `file` (replacing one with the same id) under `session_id`; returns it."""
        if not isinstance(file, File):
            raise TypeError(f"FileStore.put takes a File, got {type(file).__name__}")
        with self._lock:
            old = self._files.pop(file.id, None)
            if old is not None:
                self._bytes -= old[0].bytes
            self._files[file.id] = (file, session_id)
            self._bytes += file.bytes
            while self._bytes > self.max_bytes and len(self._files) > 1:
                _, (dropped, _) = self._files.popitem(last=False)
                self._bytes -= dropped.bytes
        return file

    def get(self, file_id: str) -> File | None:
        """The stored file with its full body, or None."""
        with self._lock:
            entry = self._files.get(file_id)
        return None if entry is None else entry[0]

    def for_session(self, session_id: str) -> list[File]:
        """The files stored under `session_id`, oldest first."""
        with self._lock:
            return [f for f, sid in self._files.values() if sid == session_id]

    def discard_session(self, session_id: str) -> int:
        """Forget the files of a deleted session; how many were dropped."""
        with self._lock:
            ids = [i for i, (_, sid) in self._files.items() if sid == session_id]
            for i in ids:
                self._bytes -= self._files.pop(i)[0].bytes
        return len(ids)

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)
