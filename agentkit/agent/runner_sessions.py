"""The Runner's agentic-session and file methods (runner-api.md §2.8, §1.8 `Runner.find_file`).

Scope: export, import, delete and list stored sessions, and `find_file(id)` (the full body of a
file an agent turn received or produced), each a thin, documented call into the session store
and the file store, mixed into `agentkit.runner.Runner`.

Non-goals: the stores themselves (`agentkit.session_store`, `agentkit.file_store`), the agent
loop that fills them (`agentkit.agent.loop`).
"""

from __future__ import annotations

from agentkit.api.files import File
from agentkit.file_store import FileStore
from agentkit.models.table import ModelTable
from agentkit.session_store import SessionStore

__all__ = ["SessionMethods"]


class SessionMethods:
    """Mixin: needs `self._models` (a `ModelTable`), `self._sessions` (a `SessionStore`) and
    `self._files` (a `FileStore`)."""

    _models: ModelTable
    _sessions: SessionStore
    _files: FileStore

    def _check_model(self, model_id: str | None) -> None:
        if model_id is not None:
            self._models.resolve(model_id)

    def export_session(self, session_id: str, model_id: str | None = None) -> str | None:
        """The stored agentic session as JSON (runner-api §2.8 shape plus `version`), or None if absent."""
        self._check_model(model_id)
        session = self._sessions.get(session_id)
        return None if session is None else session.to_json_str()

    def import_session(self, session_id: str, session_json: str, model_id: str | None = None) -> None:
        """Store a session exported before (replaces any session with this id); ValueError on bad JSON."""
        self._check_model(model_id)
        if not isinstance(session_json, (str, bytes)):
            raise TypeError(f"session_json must be a JSON str, got {type(session_json).__name__}")
        self._sessions.import_json(session_id, session_json)

    def delete_session(self, session_id: str, model_id: str | None = None) -> bool:
        """Delete a session (its remembered approvals and its files); whether it existed."""
        self._check_model(model_id)
        self._files.discard_session(session_id)
        return self._sessions.delete(session_id)

    def list_session_ids(self, model_id: str | None = None) -> list[str]:
        """Ids of the stored sessions."""
        self._check_model(model_id)
        return self._sessions.ids()

    def find_file(self, file_id: str) -> File | None:
        """A file an agent turn received (`input_files`) or produced (`response.files`), with its full
        body even when the response elided it; None when no stored file or session has that id.

        Files of sessions saved by an earlier process are found through the session store.
        """
        if not isinstance(file_id, str):
            raise TypeError(f"file_id must be a str, got {type(file_id).__name__}")
        found = self._files.get(file_id)
        if found is not None:
            return found
        for session_id in self._sessions.ids():
            session = self._sessions.get(session_id)
            for entry in session.files if session is not None else []:
                if entry.get("id") == file_id:
                    return File.from_dict(entry)
        return None
