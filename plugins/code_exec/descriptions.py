"""The text and JSON schemas the model sees for the code and shell tools (runner-api.md §2.7).

Scope: one function per tool returning (description, parameters). Descriptions state what the
executor really does: persistence, the last expression's value, figure capture, the timeout, the
work directory, the files the user asked for, and the isolation the executor reports it applied
(`IsolationReport.describe()`), never more.

Non-goals: running anything; deciding which tools a turn gets (`agentkit.plugins.code_exec.plugin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkit.api.files import RequestedFile

__all__ = ["python_tool", "requested_files_text", "reset_tool", "shell_tool", "surface_tool"]

# strict string arguments without a maxLength are short one-line values (agentkit's grammar): code
# and commands are long and multi-line
MAX_CODE_CHARS = 20_000
# code starts with a letter, digit, "_", "#" or "@": without it SmolLM2-135M opens the string with
# "}}" or ")]}" (it wants to close the call) and never writes code
CODE_PATTERN = r"^[A-Za-z0-9_#@][\s\S]*$"
_OUTPUTS = {"type": "array", "items": {"type": "string"},
            "description": "Paths (relative to the working directory) of files this call writes that "
                           "should be returned to the user."}


def requested_files_text(files: Sequence[RequestedFile]) -> str:
    """The sentence listing the output files the request declares (empty when none)."""
    if not files:
        return ""
    parts = []
    for f in files:
        extra = ", ".join(x for x in (f.format and f"format {f.format}", f.description) if x)
        parts.append(f"{f.name} ({extra})" if extra else f.name)
    return (" The user expects these files in the working directory; write them and name them in "
            "`outputs`: " + "; ".join(parts) + ".")


def python_tool(timeout_secs: int, workdir: str, isolation: str,
                requested: Sequence[RequestedFile] = ()) -> tuple[str, dict[str, Any]]:
    """The description and parameters of `mistralrs_execute_python`."""
    text = (
        "Run Python code and get its output. The Python session persists for this conversation: "
        "variables, imports and functions stay defined for later calls. The value of the last "
        "expression is returned as `result` (like a notebook cell) and print() output as `stdout`; "
        "errors come back as `exception` with the traceback. matplotlib figures shown with "
        "plt.show() or left open at the end are returned as PNG images; a file saved with savefig "
        "is returned when you name it in `outputs`. input() is not available. "
        "Use the packages already installed; do not install packages. "
        f"Each call may run for {timeout_secs} seconds; then it is interrupted, and if it does not "
        "stop the session is restarted (its variables are lost). "
        f"The working directory is {workdir}. Isolation: {isolation}."
        + requested_files_text(requested))
    params = {"type": "object", "properties": {
        "code": {"type": "string", "maxLength": MAX_CODE_CHARS, "pattern": CODE_PATTERN,
                 "description": "The Python code to run, for example: print(2 + 2)"},
        "outputs": _OUTPUTS,
    }, "required": ["code"], "additionalProperties": False}
    return text, params


def reset_tool() -> tuple[str, dict[str, Any]]:
    """The description and parameters of `mistralrs_reset_python_session`."""
    return ("Restart the Python session: every variable, import and function defined so far is "
            "forgotten. Files in the working directory are kept.",
            {"type": "object", "properties": {}, "required": [], "additionalProperties": False})


def shell_tool(shell_path: str, timeout_secs: int, workdir: str, isolation: str,
               requested: Sequence[RequestedFile] = ()) -> tuple[str, dict[str, Any]]:
    """The description and parameters of `mistralrs_shell`."""
    text = (
        f"Run shell commands with {shell_path} in the working directory {workdir}, which persists "
        "for this conversation. The commands run one after the other in one shell; the result has "
        "`stdout`, `stderr`, `exit_code` and `status` (success, error or timeout). New or changed "
        f"files are returned to the user. A call may run for at most {timeout_secs} seconds. "
        f"Isolation: {isolation}." + requested_files_text(requested))
    params = {"type": "object", "properties": {
        "commands": {"type": "array", "items": {"type": "string", "maxLength": MAX_CODE_CHARS},
                     "description": "Shell commands to run, in order."},
        "outputs": _OUTPUTS,
        "timeout_ms": {"type": "integer", "description": "Time limit of this call in milliseconds."},
        "max_output_length": {"type": "integer",
                              "description": "The most characters of stdout and of stderr to return."},
    }, "required": ["commands"], "additionalProperties": False}
    return text, params


def surface_tool(workdir: str) -> tuple[str, dict[str, Any]]:
    """The description and parameters of `mistralrs_surface_outputs`."""
    return (f"Return files from the working directory {workdir} to the user.",
            {"type": "object", "properties": {
                "outputs": {"type": "array", "items": {"type": "string"},
                            "description": "Paths of the files, relative to the working directory."},
            }, "required": ["outputs"], "additionalProperties": False})
