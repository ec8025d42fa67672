"""`ToolContext`: one agentic turn as the request-scoped tools of that turn see it.

Scope: the values a plugin's per-turn tools need (the request, the session, the Runner's
options, the file store, the turn and round numbers, the model's context size and tokenizer),
`add_file`/`add_error_file` for files a tool produces (ids `file_<run12>_r<round>_<idx>`,
`FileSource(tool, round, turn)`), `notes` plugins add for the model, and the system message
that shows those notes and the request's input files (runner-api.md §2.9: text previews of at
most 4096 characters per file and 32768 in all). `response_files` elides bodies above 8 MiB
from responses (`Runner.find_file` has them).

Non-goals: choosing or running tools (`agentkit.agent.loop`), storing files (`agentkit.file_store`).
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agentkit.api.files import File, FileSource, guess_mime_type, is_text_mime
from agentkit.file_store import FileStore

if TYPE_CHECKING:
    from agentkit.api.requests import ChatCompletionRequest
    from agentkit.config import RunnerConfig
    from agentkit.sessions import Session

__all__ = ["INPUT_PREVIEW_CHARS", "INPUT_PREVIEW_TOTAL", "RESPONSE_BODY_MAX", "ToolContext"]

INPUT_PREVIEW_CHARS = 4096
INPUT_PREVIEW_TOTAL = 32768
RESPONSE_BODY_MAX = 8 * 1024 * 1024


@dataclass(eq=False)
class ToolContext:
    """What the tools of one agentic turn know; built by the agent loop once per turn.

    Plugins receive it in `agent_request_tools` and close their tools over it. The loop keeps
    `round` (the tool round about to run) and `prompt_tokens` (the last rendered prompt's size)
    current, so a tool can size its output from `remaining_tokens()` when it runs.
    """

    request: ChatCompletionRequest
    session: Session
    config: RunnerConfig | None
    files: FileStore
    turn: int
    max_seq_len: int
    count_tokens: Callable[[str], int]
    output_tokens: int
    input_files: list[File] = field(default_factory=list)
    round: int = 0
    prompt_tokens: int = 0
    notes: list[str] = field(default_factory=list)
    produced: list[File] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    search_providers: Callable[[], dict[str, Callable[..., Any]]] | None = None  # the Runner's, by name
    # the executor factories plugins registered (`PluginHost.code_executors`), by name
    code_executors: Callable[[], dict[str, Callable[..., Any]]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def remaining_tokens(self) -> int:
        """Tokens of the model's context not taken by the last prompt."""
        return max(0, self.max_seq_len - self.prompt_tokens)

    def output_budget(self) -> int:
        """Tokens one tool result may take (the Runner's `tool_output_max_tokens` or its default
        share of the context); the loop cuts longer results to their head and tail."""
        return self.output_tokens

    def _new_id(self) -> str:
        n = sum(1 for f in self.produced if f.source is not None and f.source.round == self.round)
        return f"file_{self.run_id}_r{self.round}_{n}"

    def add_file(self, name: str, data: bytes | str, tool: str, mime_type: str | None = None) -> File:
        """Record a file `tool` produced: stored in the Runner's file store, listed on the response
        and in the session. Text bodies (str, or bytes of a text MIME type that decode as UTF-8)
        are kept as `text`, others as base64."""
        mime = mime_type or guess_mime_type(name)
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        text: str | None = data if isinstance(data, str) else None
        if text is None and is_text_mime(mime):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        with self._lock:
            file = File(id=self._new_id(), name=name, mime_type=mime, bytes=len(raw),
                        source=FileSource(tool, self.round, self.turn), text=text,
                        data_base64=None if text is not None else base64.b64encode(raw).decode("ascii"))
            self.produced.append(file)
        return self.files.put(file, self.session.id)

    def add_error_file(self, name: str, tool: str, code: str, message: str) -> File:
        """Record a placeholder for a required output file that was never written (`File.is_error()`)."""
        with self._lock:
            file = File(id=self._new_id(), name=name, source=FileSource(tool, self.round, self.turn),
                        error_code=code, error_message=message)
            self.produced.append(file)
        return self.files.put(file, self.session.id)

    def store_uploads(self, uploads: list[Any]) -> None:
        """Store the request's `InputFile`s under this session and list them in `input_files`."""
        for upload in uploads:
            self.input_files.append(self.files.put(upload.to_file(), self.session.id))

    def system_note(self) -> str | None:
        """The system message shown at the start of this turn's prompt: plugins' notes, then the
        input files with text previews; None when there is nothing to say."""
        parts = list(self.notes)
        if self.input_files:
            lines = ["The user attached these files (read them with the file tools when offered):"]
            budget = INPUT_PREVIEW_TOTAL
            for f in self.input_files:
                lines.append(f"- {f.name} (id {f.id}, {f.mime_type}, {f.bytes} bytes)")
                if f.text is not None and budget > 0:
                    preview = f.text[:min(INPUT_PREVIEW_CHARS, budget)]
                    budget -= len(preview)
                    more = "" if len(preview) == len(f.text) else f"\n[... {len(f.text) - len(preview)} more characters]"
                    lines.append(f"```\n{preview}{more}\n```")
            parts.append("\n".join(lines))
        return "\n\n".join(parts) if parts else None

    def response_files(self) -> list[File]:
        """This turn's produced files as the response lists them (bodies above 8 MiB elided)."""
        return [replace(f, text=None, data_base64=None) if f.bytes > RESPONSE_BODY_MAX else f
                for f in self.produced]

    def to_session(self) -> list[dict[str, Any]]:
        """The uploaded and produced files in the session's `files` JSON form."""
        return [f.to_dict() for f in self.input_files + self.response_files()]

    def prompt_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`messages` with `system_note()` first: merged into a leading system message, or a new one."""
        note = self.system_note()
        if note is None:
            return messages
        if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
            return [{**messages[0], "content": f"{note}\n\n{messages[0]['content']}"}] + messages[1:]
        return [{"role": "system", "content": note}] + messages
