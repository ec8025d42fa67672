"""Built-in plugin: the model reads the session's stored files (runner-api.md §2.9).

Scope: `FilesPlugin.agent_request_tools` offers, when the turn has input files or its session
has stored files,
- `mistralrs_list_files()`: id, name, type, size and origin of each file of the session;
- `mistralrs_read_file(file_id | name, offset?, length?)`: a slice of a text file, at most 64 KiB
  and at most what fits the result's share of the model's context (`ToolContext.output_budget`),
  with `next_offset` to page on. Offsets and lengths count bytes of the UTF-8 body; a slice never
  splits a character.
Only files of the request's own session are visible (a file id of another session reads as not
found). Binary files are listed with their size and type; reading one says to open it with the
code tool instead.

Non-goals: storing files and previews (the agent loop and `FileStore`), mounting files into a
work directory (`agentkit.plugins.code_exec`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentkit.api.enums import AgentToolKind, AgentToolSource
from agentkit.hookspecs import hookimpl
from agentkit.tools import Tool, ToolResult

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext
    from agentkit.api.files import File

__all__ = ["LIST_FILES", "MAX_SLICE_BYTES", "READ_FILE", "FilesPlugin"]

READ_FILE = "mistralrs_read_file"
LIST_FILES = "mistralrs_list_files"
MAX_SLICE_BYTES = 64 * 1024
_OVERHEAD_TOKENS = 64


def _session_files(context: ToolContext) -> list[File]:
    """The session's stored files, this turn's input files included, each id once (latest wins)."""
    found: dict[str, File] = {}
    for f in list(context.files.for_session(context.session.id)) + list(context.input_files):
        found[f.id] = f
    return list(found.values())


def _find(context: ToolContext, file_id: Any, name: Any) -> File:
    """The session file with `file_id`, else the latest one named `name`; ValueError naming the choices."""
    files = _session_files(context)
    if file_id is not None:
        if not isinstance(file_id, str):
            raise ValueError(f"`file_id` must be a str, got {file_id!r}")
        for f in files:
            if f.id == file_id:
                return context.files.get(f.id) or f
    elif name is not None:
        if not isinstance(name, str):
            raise ValueError(f"`name` must be a str, got {name!r}")
        for f in reversed(files):
            if f.name == name:
                return context.files.get(f.id) or f
    else:
        raise ValueError("give `file_id` or `name` (call mistralrs_list_files to see them)")
    known = ", ".join(f"{f.name} ({f.id})" for f in files) or "none"
    raise ValueError(f"no file {file_id or name!r} in this session; the files are: {known}")


def _int(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{what}` must be a non-negative integer, got {value!r}")
    return value


def _char_end(data: bytes, end: int) -> int:
    """`end` moved back so that `data[:end]` does not end inside a UTF-8 character."""
    if end >= len(data):
        return len(data)
    back = end
    while back > 0 and end - back < 4 and data[back] & 0xC0 == 0x80:
        back -= 1
    return back


def _slice(context: ToolContext, data: bytes, offset: int, length: int) -> tuple[str, int]:
    """(text of `data[offset:offset+length]` that fits the result budget, end offset)."""
    budget = max(16, context.output_budget() - _OVERHEAD_TOKENS)
    end = _char_end(data, min(len(data), offset + min(length, MAX_SLICE_BYTES, budget * 16)))
    while True:
        text = data[offset:end].decode("utf-8", errors="replace")
        if end - offset <= 16 or context.count_tokens(text) <= budget:
            return text, end
        end = _char_end(data, offset + max(16, int((end - offset) * 0.7)))


def _read_file(context: ToolContext, args: dict[str, Any]) -> ToolResult:
    file = _find(context, args.get("file_id"), args.get("name"))
    head: dict[str, Any] = {"file_id": file.id, "name": file.name, "mime_type": file.mime_type, "bytes": file.bytes}
    if file.is_error():
        return ToolResult(json.dumps({**head, "status": "error", "error": file.error_message or file.error_code}),
                          status="error")
    if file.text is None:
        hint = ("it is binary: open it with the code or shell tool" if file.data_base64 is not None
                else "its body is not stored")
        return ToolResult(json.dumps({**head, "status": "error", "error": f"{file.name} cannot be read as text: "
                                      f"{hint}"}), status="error")
    data = file.text.encode("utf-8")
    offset = _int(args.get("offset"), "offset", 0)
    if offset > len(data):
        raise ValueError(f"`offset` {offset} is past the end of {file.name} ({len(data)} bytes)")
    length = _int(args.get("length"), "length", MAX_SLICE_BYTES)
    text, end = _slice(context, data, offset, length)
    body = {**head, "status": "ok", "offset": offset, "length": end - offset, "content": text,
            "eof": end >= len(data)}
    if end < len(data):
        body["next_offset"] = end
    return ToolResult(json.dumps(body, ensure_ascii=False))


def _list_files(context: ToolContext, args: dict[str, Any]) -> ToolResult:
    rows = []
    for f in _session_files(context):
        row: dict[str, Any] = {"file_id": f.id, "name": f.name, "mime_type": f.mime_type, "bytes": f.bytes,
                               "text": f.is_text()}
        if f.source is not None:
            row["source"] = f.source.to_dict()
        if f.is_error():
            row["error"] = f.error_message or f.error_code
        rows.append(row)
    return ToolResult(json.dumps({"status": "ok", "files": rows}, ensure_ascii=False))


def _tool(name: str, description: str, parameters: dict[str, Any], run: Any, context: ToolContext) -> Tool:
    return Tool(name=name, description=description, parameters=parameters, fn=lambda _n, args: run(context, args),
                source=AgentToolSource.BuiltIn, kind=AgentToolKind.File, label="File access")


class FilesPlugin:
    """Offers the file tools to turns that have files; stateless (one instance per Runner)."""

    plugin_name = "files"

    @hookimpl
    def agent_request_tools(self, context: ToolContext) -> list[Tool] | None:
        """`mistralrs_read_file` and `mistralrs_list_files` when input or session files exist."""
        if not context.input_files and not context.files.for_session(context.session.id):
            return None
        read = _tool(READ_FILE, "Read part of a file of this conversation (an input file or a file a tool "
                     "produced), by file_id or name. Returns up to 64 KiB of text from `offset` (bytes) and "
                     "`next_offset` when more follows.",
                     {"type": "object", "properties": {
                         "file_id": {"type": "string", "description": "The file's id."},
                         "name": {"type": "string", "description": "The file's name (when no id is given)."},
                         "offset": {"type": "integer", "description": "Byte offset to start at (default 0)."},
                         "length": {"type": "integer", "description": "Bytes to read (at most 65536)."},
                     }, "required": [], "additionalProperties": False}, _read_file, context)
        listing = _tool(LIST_FILES, "List the files of this conversation: id, name, type, size and origin.",
                        {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
                        _list_files, context)
        return [read, listing]
