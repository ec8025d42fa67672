"""What a code or shell call hands back: the result JSON, the files it surfaces, capped text.

Scope (runner-api.md §2.7):
- `cap_text()`: one stream (stdout, stderr) cut to a token budget, keeping its head and tail around
  a "[... N characters truncated ...]" marker; the full text is then written to a file in the
  work directory (`full_output_file()`) and named in the result, so the model can page through it
  with the code or shell tool.
- `surface_images()`: PNG figures become `File`s (`context.add_file`).
- `surface_named()`: files named in a call's `outputs` or declared in `request.files`
  (`RequestedFile`) are read from the work directory and become `File`s; a name outside the work
  directory, a missing or an unreadable file becomes an error placeholder (`context.add_error_file`).
- `snapshot()` / `changed_files()`: the work directory's non-hidden files before and after a shell
  call, so new and modified ones surface by themselves.

The loop's own cap (`agentkit.agent.tool_limits.cap_tool_output`) still applies to the whole
result; this module sizes each stream below the share the loop allows (`context.output_budget()`),
so the JSON stays whole and the loop's cap does not fire on a code result.

Non-goals: running code (the executor), the file store and `File` ids (`ToolContext.add_file`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext
    from agentkit.api.files import File

__all__ = ["MAX_SURFACED_BYTES", "Capped", "cap_text", "changed_files", "file_entries", "full_output_file", "resolve_in",
           "snapshot", "surface_images", "surface_named"]

# a file larger than this is not read into the store (it stays in the work directory)
MAX_SURFACED_BYTES = 64 * 1024 * 1024
# at most this many files surface by themselves after one shell call
MAX_AUTO_SURFACED = 32
# the hidden folder of the work directory holding full outputs (hidden: never auto-surfaced)
OUTPUT_DIR = ".outputs"
_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class Capped:
    """One stream after `cap_text`: the text the model sees, and the full length it came from."""

    text: str
    total_chars: int
    truncated: bool


def _marker(n: int, where: str | None) -> str:
    tail = f"; the full text is in {where}" if where else ""
    return f"\n[... {n} characters truncated{tail} ...]\n"


def cap_text(text: str, max_tokens: int, count_tokens: Callable[[str], int], max_chars: int | None = None,
             where: str | None = None) -> Capped:
    """`text` if it fits in `max_tokens` tokens (and `max_chars` characters), else head and tail around a marker.

    `where` names the file holding the full text (written by the caller). Never tokenizes more
    than about `max_tokens * 16` characters, so a 5 MB print costs a cut, not a 5 MB tokenization.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    total = len(text)
    limit = max_tokens * _CHARS_PER_TOKEN if max_chars is None else min(max_chars, max_tokens * _CHARS_PER_TOKEN)
    if total <= limit and (total <= max_tokens or count_tokens(text) <= max_tokens):
        return Capped(text, total, False)
    keep = min(limit, total)
    while True:
        head, tail = text[:keep - keep // 2], text[total - keep // 2:] if keep // 2 else ""
        out = head + _marker(total - len(head) - len(tail), where) + tail
        if keep <= 16 or count_tokens(out) <= max_tokens:
            return Capped(out, total, True)
        keep = int(keep * 0.7)


def full_output_file(workdir: Path, stream: str, text: str) -> str:
    """Write `text` to `<workdir>/.outputs/<stream>-<id>.txt`; the path relative to `workdir`."""
    folder = workdir / OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stream}-{uuid.uuid4().hex[:8]}.txt"
    (folder / name).write_text(text, encoding="utf-8", errors="replace")
    return f"{OUTPUT_DIR}/{name}"


def surface_images(context: ToolContext, tool: str, images: Iterable[bytes]) -> list[File]:
    """One PNG `File` per figure (`figure_<round>_<n>.png`), in order."""
    return [context.add_file(f"figure_r{context.round}_{i + 1}.png", png, tool, "image/png")
            for i, png in enumerate(images)]


def resolve_in(workdir: Path, name: str) -> Path:
    """`name` as a path inside `workdir`; ValueError when it is empty, absolute or leaves `workdir`."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an output file name must be a non-empty str, got {name!r}")
    if os.path.isabs(name):
        raise ValueError(f"output file {name!r} is an absolute path; name it relative to the working directory")
    root = workdir.resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"output file {name!r} is outside the working directory")
    return path


def _read(context: ToolContext, tool: str, workdir: Path, name: str, required: bool) -> File | None:
    """The file `name` of `workdir` as a `File`; an error placeholder when it cannot be read
    (None for a missing file that is not `required`)."""
    try:
        path = resolve_in(workdir, name)
    except ValueError as exc:
        return context.add_error_file(name, tool, "invalid_path", str(exc))
    if not path.is_file():
        if not required:
            return None
        return context.add_error_file(name, tool, "not_found",
                                      f"the file {name!r} was not written to the working directory")
    try:
        size = path.stat().st_size
        if size > MAX_SURFACED_BYTES:
            return context.add_error_file(name, tool, "too_large", f"{name!r} has {size} bytes, more than the "
                                          f"{MAX_SURFACED_BYTES} a surfaced file may have")
        data = path.read_bytes()
    except OSError as exc:
        return context.add_error_file(name, tool, "unreadable", f"{name!r} could not be read: {exc}")
    return context.add_file(name, data, tool)


def surface_named(context: ToolContext, tool: str, workdir: Path, names: Iterable[str],
                  required: bool = True) -> list[File]:
    """Files `names` (relative to `workdir`) as `File`s, each name once, in order.

    A missing file gives an error placeholder when `required`, else nothing.
    """
    out: list[File] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        file = _read(context, tool, workdir, name, required)
        if file is not None:
            out.append(file)
    return out


@dataclass
class Snapshot:
    """(mtime_ns, size) of each non-hidden regular file under a folder, by relative path."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)


def _hidden(rel: str, skip: tuple[str, ...]) -> bool:
    parts = rel.split("/")
    return any(p.startswith(".") for p in parts) or parts[0] in skip


def snapshot(workdir: Path, skip: tuple[str, ...] = (), limit: int = 10_000) -> Snapshot:
    """The non-hidden files of `workdir` (not under the top-level folders `skip`), at most `limit`."""
    snap = Snapshot()
    root = str(workdir)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d if rel_dir == "." else f"{rel_dir}/{d}", skip))
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if _hidden(rel, skip):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(dirpath, name)) and st.st_mode & 0o170000 == 0o100000:
                snap.files[rel.replace(os.sep, "/")] = (st.st_mtime_ns, st.st_size)
            if len(snap.files) >= limit:
                return snap
    return snap


def changed_files(before: Snapshot, after: Snapshot, limit: int = MAX_AUTO_SURFACED) -> tuple[list[str], int]:
    """(new or modified paths, at most `limit`, and how many more were left out)."""
    changed = [rel for rel, stamp in after.files.items() if before.files.get(rel) != stamp]
    return changed[:limit], max(0, len(changed) - limit)


def file_entries(files: Iterable[File]) -> list[dict[str, Any]]:
    """The `files` list of a result: id, name and bytes of each surfaced file (errors with their message)."""
    out: list[dict[str, Any]] = []
    for f in files:
        entry: dict[str, Any] = {"id": f.id, "name": f.name, "bytes": f.bytes}
        if f.is_error():
            entry["error"] = f.error_message or f.error_code
        out.append(entry)
    return out
