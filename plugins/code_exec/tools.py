"""The code and shell tools of one agentic turn (runner-api.md §2.7): their `Tool`s and what a call does.

Scope: `Workspace` (one session's executor, work directory and options as one turn sees them),
`python_tools()` (`mistralrs_execute_python`, `mistralrs_reset_python_session`) and
`shell_tools()` (`mistralrs_shell`, `mistralrs_surface_outputs`). A call validates its arguments
(a bad one is a ValueError the model sees as a failed call), runs on the session's executor,
surfaces files (figures, `outputs`, the request's declared files, and, for the shell, new or
changed files) through `ToolContext.add_file`, and returns the §2.7 JSON as a `ToolResult`
(`status` ok/error/timeout/killed/denied, images, file ids).

Non-goals: choosing and starting executors (`plugin`), the text of the descriptions
(`descriptions`), file surfacing and output caps (`outputs`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.api.enums import AgentToolKind, AgentToolSource
from agentkit.plugins.code_exec import descriptions
from agentkit.plugins.code_exec.approval import legacy_approver, tool_permission
from agentkit.plugins.code_exec.mounts import SKILLS_DIR
from agentkit.plugins.code_exec.outputs import (
    cap_text,
    changed_files,
    file_entries,
    full_output_file,
    resolve_in,
    snapshot,
    surface_images,
    surface_named,
)
from agentkit.tools import Tool, ToolResult

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext
    from agentkit.api.agent_options import CodeExecutionConfig, ShellConfig
    from agentkit.api.files import File

__all__ = ["EXECUTE_PYTHON", "RESET_PYTHON", "SHELL", "SURFACE_OUTPUTS", "Workspace", "python_tools",
           "shell_tools"]

EXECUTE_PYTHON = "mistralrs_execute_python"
RESET_PYTHON = "mistralrs_reset_python_session"
SHELL = "mistralrs_shell"
SURFACE_OUTPUTS = "mistralrs_surface_outputs"

# tool status of each executor status (the JSON keeps the executor's own word)
_STATUS = {"ok": "ok", "success": "ok", "error": "error", "timeout": "timeout", "killed": "killed",
           "denied": "denied"}


@dataclass
class Workspace:
    """One session's executor and work directory as the tools of one turn use them.

    `executor()` returns the session's `CodeExecutor` (started on first use, restarted by the
    pool after an idle reap); `isolation` is its `IsolationReport.describe()`.
    """

    context: ToolContext
    executor: Callable[[], Any]
    workdir: Path
    isolation: str
    code: CodeExecutionConfig | None = None
    shell: ShellConfig | None = None
    surfaced: dict[str, tuple[int, int] | None] = field(default_factory=dict)  # declared file -> stamp seen

    def requested(self) -> list[str]:
        """Names of the output files the request declares (`request.files`)."""
        return [f.name for f in (self.context.request.files or [])]


def _strings(value: Any, what: str, optional: bool = True) -> list[str]:
    if value is None and optional:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{what}` must be a list of strings, got {value!r}")
    return value


def _positive_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{what}` must be a positive integer, got {value!r}")
    return value


def _cap_streams(ws: Workspace, payload: dict[str, Any], streams: dict[str, str],
                 max_chars: int | None = None) -> None:
    """Put `streams` into `payload`, each capped to its share of what the result's budget leaves
    after the rest of `payload`; a cut stream's full text goes to a file named in `full_<stream>_file`."""
    ctx = ws.context

    def count(text: str) -> int:  # as the model will see it: JSON-escaped
        return ctx.count_tokens(json.dumps(text, ensure_ascii=False))

    for key in streams:
        payload[key] = ""
    rest = ctx.count_tokens(json.dumps(payload, ensure_ascii=False)) + 16 * len(streams)  # + full_*_file keys
    budget = max(16 * len(streams), ctx.output_budget() - rest)
    sizes = {k: count(v[:budget * 16]) if v else 0 for k, v in streams.items()}
    left = budget
    for i, key in enumerate(sorted(streams, key=sizes.__getitem__)):  # smallest first: it leaves the rest
        share = max(16, left // (len(streams) - i))
        text = streams[key]
        capped = cap_text(text, share, count, max_chars)
        if capped.truncated:
            where = full_output_file(ws.workdir, key, text)
            capped = cap_text(text, share, count, max_chars, where)
            payload[f"full_{key}_file"] = where
        payload[key] = capped.text
        left -= share if capped.truncated else sizes[key]


def _declared(ws: Workspace, tool: str, named: list[str]) -> list[File]:
    """The request's declared files (`request.files`) after a call: each surfaces when it is written
    or changed since it last surfaced this turn; a missing one gives an error placeholder (once per
    turn) so the model sees it is still due. Names the call's `outputs` already surfaced are skipped."""
    out: list[File] = []
    for name in ws.requested():
        try:
            path = resolve_in(ws.workdir, name)
            stat = path.stat() if path.is_file() else None
        except (ValueError, OSError):
            stat = None
        stamp = None if stat is None else (stat.st_mtime_ns, stat.st_size)
        if name in named or (name in ws.surfaced and ws.surfaced[name] == stamp):
            ws.surfaced[name] = stamp
            continue
        ws.surfaced[name] = stamp
        if stamp is not None:
            out += surface_named(ws.context, tool, ws.workdir, [name])
        else:
            out.append(ws.context.add_error_file(name, tool, "not_found", f"the requested file {name!r} has not "
                                                 "been written to the working directory yet"))
    return out


def _result(ws: Workspace, payload: dict[str, Any], status: str, files: list[File], images: list[bytes] = (),
            streams: dict[str, str] | None = None, max_chars: int | None = None) -> ToolResult:
    isolation = payload.pop("isolation", None)
    if files:  # absent when empty: a flat result is what the chat layer shows small models as "key: value"
        payload["files"] = file_entries(files)
    if isolation is not None:
        payload["isolation"] = isolation
    if streams:
        _cap_streams(ws, payload, streams, max_chars)
    return ToolResult(json.dumps(payload, ensure_ascii=False), status=_STATUS.get(status, "error"),
                      images_base64=[base64.b64encode(png).decode("ascii") for png in images],
                      file_ids=[f.id for f in files])


def _execute_python(ws: Workspace, arguments: dict[str, Any]) -> ToolResult:
    code = arguments.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"`code` must be a non-empty string of Python code, got {code!r}")
    outputs = _strings(arguments.get("outputs"), "outputs")
    timeout = ws.code.timeout_secs if ws.code is not None else 60
    res = ws.executor().execute(code, timeout)
    files = surface_images(ws.context, EXECUTE_PYTHON, res.images)
    files += surface_named(ws.context, EXECUTE_PYTHON, ws.workdir, outputs)
    files += _declared(ws, EXECUTE_PYTHON, outputs)
    # what a small model must read first comes first; the long isolation line last
    payload: dict[str, Any] = {"status": res.status, "result": res.result, "stdout": "", "stderr": "",
                               "exception": None, "images_generated": len(res.images),
                               "working_directory": str(ws.workdir),
                               "execution_time_ms": round(res.execution_time_ms),
                               "isolation": res.isolation or ws.isolation}
    streams = {"stdout": res.stdout or "", "stderr": res.stderr or ""}
    if res.exception:
        streams["exception"] = res.exception
    return _result(ws, payload, res.status, files, res.images, streams)


def _reset_python(ws: Workspace, arguments: dict[str, Any]) -> ToolResult:
    ws.executor().reset()
    return _result(ws, {"status": "ok", "message": "The Python session was restarted; files in the working "
                        "directory are kept.", "working_directory": str(ws.workdir)}, "ok", [])


def _shell(ws: Workspace, arguments: dict[str, Any]) -> ToolResult:
    commands = _strings(arguments.get("commands"), "commands", optional=False)
    if not commands:
        raise ValueError("`commands` must list at least one shell command")
    outputs = _strings(arguments.get("outputs"), "outputs")
    limit = ws.shell.timeout_secs if ws.shell is not None else 600
    timeout_ms = _positive_int(arguments.get("timeout_ms"), "timeout_ms")
    timeout = limit if timeout_ms is None else min(limit, timeout_ms / 1000)
    max_chars = _positive_int(arguments.get("max_output_length"), "max_output_length")
    before = snapshot(ws.workdir, skip=(SKILLS_DIR,))
    res = ws.executor().shell(commands, timeout)
    changed, left_out = changed_files(before, snapshot(ws.workdir, skip=(SKILLS_DIR,)))
    requested = set(ws.requested())
    files = surface_named(ws.context, SHELL, ws.workdir, outputs)
    auto = [n for n in changed if n not in outputs and n not in requested]
    files += surface_named(ws.context, SHELL, ws.workdir, auto, required=False)
    files += _declared(ws, SHELL, outputs)
    payload: dict[str, Any] = {"status": res.status, "exit_code": res.exit_code, "stdout": "", "stderr": "",
                               "timed_out": bool(res.timed_out), "working_directory": str(ws.workdir)}
    if left_out:
        payload["files_not_surfaced"] = left_out
    payload["isolation"] = ws.isolation
    return _result(ws, payload, res.status, files,
                   streams={"stdout": res.stdout or "", "stderr": res.stderr or ""}, max_chars=max_chars)


def _surface(ws: Workspace, arguments: dict[str, Any]) -> ToolResult:
    outputs = _strings(arguments.get("outputs"), "outputs", optional=False)
    files = surface_named(ws.context, SURFACE_OUTPUTS, ws.workdir, outputs)
    status = "error" if any(f.is_error() for f in files) else "success"
    return _result(ws, {"status": status, "working_directory": str(ws.workdir)}, status, files)


def _tool(name: str, spec: tuple[str, dict[str, Any]], run: Callable[[Workspace, dict[str, Any]], ToolResult],
          ws: Workspace, kind: AgentToolKind, label: str, permission: Any, approve: Any = None) -> Tool:
    description, parameters = spec
    tool = Tool(name=name, description=description, parameters=parameters, fn=lambda _n, args: run(ws, args),
                strict=True, source=AgentToolSource.BuiltIn, kind=kind, label=label,
                permission=tool_permission(permission))
    if approve is not None:
        tool.approve = approve
    return tool


def python_tools(ws: Workspace) -> list[Tool]:
    """`mistralrs_execute_python` and `mistralrs_reset_python_session` for this workspace.

    Both carry `CodeExecutionConfig.permission` and, when set, its legacy `approval_callback`.
    """
    cfg = ws.code
    timeout = cfg.timeout_secs if cfg is not None else 60
    permission = cfg.permission if cfg is not None else None
    approve = None
    if cfg is not None and cfg.approval_callback is not None:
        approve = legacy_approver(cfg.approval_callback, lambda: str(ws.workdir))
    requested = ws.context.request.files or []
    spec = descriptions.python_tool(timeout, str(ws.workdir), ws.isolation, requested)
    return [_tool(EXECUTE_PYTHON, spec, _execute_python, ws, AgentToolKind.CodeExecution, "Python code",
                  permission, approve),
            _tool(RESET_PYTHON, descriptions.reset_tool(), _reset_python, ws, AgentToolKind.CodeExecution,
                  "Python code", permission, approve)]


def shell_tools(ws: Workspace) -> list[Tool]:
    """`mistralrs_shell` and `mistralrs_surface_outputs`, with `ShellConfig.permission`."""
    cfg = ws.shell
    shell_path = cfg.shell_path if cfg is not None else "/bin/sh"
    timeout = cfg.timeout_secs if cfg is not None else 600
    permission = cfg.permission if cfg is not None else None
    requested = ws.context.request.files or []
    return [_tool(SHELL, descriptions.shell_tool(shell_path, timeout, str(ws.workdir), ws.isolation, requested),
                  _shell, ws, AgentToolKind.Shell, "Shell command", permission),
            _tool(SURFACE_OUTPUTS, descriptions.surface_tool(str(ws.workdir)), _surface, ws, AgentToolKind.File,
                  "File outputs", permission)]
