"""File value types of the agent API (runner-api.md §1.8, §2.9): `RequestedFile`, `InputFile`,
`File`, `FileSource`.

Scope: construction, validation, MIME inference (`mimetypes`, else application/octet-stream),
text/binary classification, `File.save`, and the session-export JSON shape of a `File`
(`to_dict`/`from_dict`). Ids: uploads get `file-<uuid4 hex>`.

Non-goals: the file store, the 8 MiB response elision policy and the tools that read files (the
agent layer owns those).
"""

from __future__ import annotations

import base64
import builtins
import mimetypes
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agentkit.api.checks import check_int, check_str

__all__ = ["File", "FileSource", "InputFile", "RequestedFile", "guess_mime_type", "is_text_mime"]

PREVIEW_CHARS = 4096
_TEXT_APPLICATION_MIMES = frozenset(
    {
        "application/json", "application/xml", "application/x-yaml", "application/yaml", "application/toml",
        "application/javascript", "application/x-javascript", "application/sql", "application/x-sh",
        "application/x-python", "application/x-tex", "application/csv", "application/ld+json",
    }
)


def guess_mime_type(name: str) -> str:
    """MIME type for a file name from its extension; `application/octet-stream` when unknown."""
    mime, _ = mimetypes.guess_type(name, strict=False)
    return mime or "application/octet-stream"


def is_text_mime(mime_type: str | None) -> bool:
    """Whether a MIME type denotes text (text/*, JSON, XML, YAML, source code, ...)."""
    if not mime_type:
        return False
    mime = mime_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_APPLICATION_MIMES or mime.endswith(("+json", "+xml"))


def _format_from_name(name: str) -> str | None:
    ext = os.path.splitext(name)[1][1:].lower()
    return ext or None


@dataclass(frozen=True)
class RequestedFile:
    """An output file the model must produce (`ChatCompletionRequest(files=[...])`)."""

    name: str
    format: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        check_str("RequestedFile", "name", self.name)
        if not self.name.strip():
            raise ValueError("RequestedFile: `name` must not be empty")
        check_str("RequestedFile", "format", self.format, optional=True)
        check_str("RequestedFile", "description", self.description, optional=True)


@dataclass(frozen=True)
class InputFile:
    """A user file attached to a chat request (`input_files=[...]`); `id` is assigned at construction."""

    name: str
    data: builtins.bytes = field(repr=False)
    mime_type: str | None = None
    id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        check_str("InputFile", "name", self.name)
        if not self.name.strip():
            raise ValueError("InputFile: `name` must not be empty")
        if isinstance(self.data, (bytearray, memoryview)):
            object.__setattr__(self, "data", bytes(self.data))
        if not isinstance(self.data, bytes):
            hint = "; use InputFile.from_text(name, text) for text" if isinstance(self.data, str) else ""
            raise TypeError(f"InputFile: `data` must be bytes, got {type(self.data).__name__}{hint}")
        check_str("InputFile", "mime_type", self.mime_type, optional=True)
        if self.mime_type is None:
            object.__setattr__(self, "mime_type", guess_mime_type(self.name))
        object.__setattr__(self, "id", f"file-{uuid.uuid4().hex}")

    @property
    def bytes(self) -> int:
        """Size of the file in bytes."""
        return len(self.data)

    @staticmethod
    def from_text(name: str, text: str, mime_type: str = "text/plain") -> InputFile:
        """An input file from a string (stored UTF-8 encoded)."""
        check_str("InputFile.from_text", "text", text)
        return InputFile(name, text.encode("utf-8"), mime_type)

    @staticmethod
    def from_path(path: str | os.PathLike[str], mime_type: str | None = None, name: str | None = None) -> InputFile:
        """An input file read from disk; `name` defaults to the path's basename (OSError if unreadable)."""
        path = check_str("InputFile.from_path", "path", path, path=True)
        with open(path, "rb") as fh:
            data = fh.read()
        return InputFile(name if name is not None else os.path.basename(path), data, mime_type)

    def is_text(self) -> bool:
        """Whether the content is text: a text-like MIME type and valid UTF-8."""
        return self.text() is not None

    def text(self) -> str | None:
        """The UTF-8 decoded content for text-like files, else None."""
        if not is_text_mime(self.mime_type):
            return None
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def to_file(self, purpose: str = "user_data") -> File:
        """This upload as a stored `File` (same id; text body for text files, base64 otherwise)."""
        text = self.text()
        return File(
            id=self.id, name=self.name, format=_format_from_name(self.name), mime_type=self.mime_type,
            bytes=len(self.data), purpose=purpose, text=text,
            preview=text[:PREVIEW_CHARS] if text is not None else None,
            data_base64=None if text is not None else base64.b64encode(self.data).decode("ascii"),
        )


@dataclass(frozen=True)
class FileSource:
    """Where an output file came from: the tool name, the agentic round and the user turn."""

    tool: str
    round: int
    turn: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form `{"tool", "round", "turn"}`."""
        return {"tool": self.tool, "round": self.round, "turn": self.turn}


@dataclass(frozen=True, kw_only=True)
class File:
    """A file produced by a tool or uploaded by the user (`ChatCompletionResponse.files`, `Runner.find_file`).

    The body is `text` (UTF-8 files) or `data_base64` (binary files); both are None when the body
    was elided from the response (`is_truncated()`), or when the file is an error placeholder for
    a required file that was never written (`is_error()`, with `error_code`/`error_message`).
    """

    id: str
    name: str
    format: str | None = None
    mime_type: str | None = None
    bytes: int = 0
    source: FileSource | None = None
    text: str | None = None
    data_base64: str | None = None
    preview: str | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))
    purpose: str = "agent_output"
    error_code: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        check_str("File", "id", self.id)
        check_str("File", "name", self.name)
        check_int("File", "bytes", self.bytes)
        if self.format is None:
            object.__setattr__(self, "format", _format_from_name(self.name))
        if self.mime_type is None and not self.is_error():
            object.__setattr__(self, "mime_type", guess_mime_type(self.name))
        if self.text is not None and self.preview is None:
            object.__setattr__(self, "preview", self.text[:PREVIEW_CHARS])

    def is_text(self) -> bool:
        """Whether the body is (or was, if elided) UTF-8 text."""
        return self.text is not None or (self.data_base64 is None and is_text_mime(self.mime_type))

    def is_binary(self) -> bool:
        """Whether the body is binary (base64 in `data_base64`)."""
        return self.data_base64 is not None or (
            self.text is None and not self.is_error() and not is_text_mime(self.mime_type)
        )

    def is_image(self) -> bool:
        """Whether the MIME type is image/*."""
        return (self.mime_type or "").startswith("image/")

    def is_video(self) -> bool:
        """Whether the MIME type is video/*."""
        return (self.mime_type or "").startswith("video/")

    def is_error(self) -> bool:
        """Whether this is a placeholder for a required output file that was never written."""
        return self.error_code is not None or self.error_message is not None

    def is_truncated(self) -> bool:
        """Whether the body was elided (bytes > 0 but no body); `Runner.find_file(id)` has it."""
        return self.bytes > 0 and self.text is None and self.data_base64 is None and not self.is_error()

    def content(self) -> builtins.bytes:
        """The raw body (OSError when elided or an error placeholder)."""
        if self.is_error():
            raise OSError(f"file {self.name!r} ({self.id}) was never written: {self.error_message or self.error_code}")
        if self.text is not None:
            return self.text.encode("utf-8")
        if self.data_base64 is not None:
            return base64.b64decode(self.data_base64)
        if self.bytes > 0:
            raise OSError(
                f"the body of file {self.name!r} ({self.id}) was elided from the response; "
                "fetch it with Runner.find_file(id)"
            )
        return b""

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the body to `path` (into it, under `name`, if `path` is a directory); returns the path."""
        target = os.fspath(path)
        if os.path.isdir(target):
            target = os.path.join(target, os.path.basename(self.name))
        data = self.content()
        with open(target, "wb") as fh:
            fh.write(data)
        return target

    def to_dict(self) -> dict[str, Any]:
        """Session-export JSON form (`id, name, format?, mime_type?, bytes, created_at, purpose, source`
        plus `text`/`preview`, `data_base64` or `code`/`message`)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.format is not None:
            out["format"] = self.format
        if self.mime_type is not None:
            out["mime_type"] = self.mime_type
        out.update(bytes=self.bytes, created_at=self.created_at, purpose=self.purpose)
        if self.source is not None:
            out["source"] = self.source.to_dict()
        if self.is_error():
            out.update(code=self.error_code, message=self.error_message)
        elif self.text is not None:
            out.update(text=self.text, preview=self.preview)
        elif self.data_base64 is not None:
            out["data_base64"] = self.data_base64
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> File:
        """Inverse of `to_dict` (ValueError naming the problem on malformed input)."""
        if not isinstance(data, dict) or "id" not in data or "name" not in data:
            raise ValueError(f"a file entry needs at least 'id' and 'name', got {data!r}")
        src = data.get("source")
        try:
            source = FileSource(src["tool"], int(src["round"]), int(src["turn"])) if src else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"file {data['id']!r}: malformed source {src!r}") from exc
        return cls(
            id=data["id"], name=data["name"], format=data.get("format"), mime_type=data.get("mime_type"),
            bytes=int(data.get("bytes", 0)), source=source, text=data.get("text"),
            data_base64=data.get("data_base64"), preview=data.get("preview"),
            created_at=int(data.get("created_at", 0)), purpose=data.get("purpose", "agent_output"),
            error_code=data.get("code"), error_message=data.get("message"),
        )
