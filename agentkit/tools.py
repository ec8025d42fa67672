"""Tools the agent loop can run: `Tool` (schema + executor), `ToolCall` and `ToolResult`.

Scope: the value types shared by plugins, the plugin manager and the agent loop, and the two
ways a Python callable becomes a tool:
- `Tool.from_function(fn)`: a plain function whose parameters *are* the tool arguments
  (`def get_weather(city: str) -> str`), called as `fn(**arguments)`; the JSON schema comes
  from the signature's annotations and defaults, descriptions from the docstring.
- `Tool.from_callback(name, cb)`: a mistralrs `tool_callbacks` entry `cb(tool_name, args) -> str`;
  its signature says nothing about the arguments, so the schema comes from the docstring's
  `Args:` section (Google style) and otherwise accepts any object.

`run_tool()` runs one call and turns every failure into a `ToolResult`.
`decode_arguments()` is the one reader for "tool-call arguments may be a JSON string".

Non-goals: running tools with permissions, approvals or timeouts (the agent loop), MCP and
other dynamic tool sources (plugins).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agentkit.api.enums import AgentPermission, AgentToolKind, AgentToolSource
from agentkit.errors import CancelToolCall

__all__ = ["Tool", "ToolCall", "ToolResult", "ToolSource", "ToolStatus", "decode_arguments", "run_tool"]

logger = logging.getLogger("agentkit.tools")

ToolStatus = Literal["ok", "failed", "denied", "not_found", "error", "timeout", "killed"]

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                               dict: "object", list: "array", type(None): "null"}
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def decode_arguments(arguments: Any) -> Any:
    """Tool-call arguments as a JSON value: a string is parsed (blank means `{}`), anything else is returned as is.

    Raises ValueError (from `json.loads`) when `arguments` is a string that is not JSON; callers
    decide whether that rejects the call, raises, or keeps the raw text.
    """
    if not isinstance(arguments, str):
        return arguments
    return json.loads(arguments) if arguments.strip() else {}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"tool name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or '_'")
    return name


def _type_schema(tp: Any) -> dict[str, Any]:
    """A JSON schema for a Python annotation (str, int, list[str], Literal[...], X | None, ...)."""
    if tp is inspect.Parameter.empty or tp is Any:
        return {}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        kinds = {_JSON_TYPES.get(type(a)) for a in args}
        return {"type": kinds.pop(), "enum": list(args)} if len(kinds) == 1 and None not in kinds else {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _type_schema(inner[0])
        return {"anyOf": [_type_schema(a) for a in inner]}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": _type_schema(args[0])} if args else {"type": "array"}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp in _JSON_TYPES:
        return {"type": _JSON_TYPES[tp]}
    return {}


def _doc_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, tuple[str | None, str]]]:
    """(summary paragraph, {arg: (type text, description)}) from a Google-style docstring."""
    doc = inspect.getdoc(fn) or ""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary.append(line.strip())
    args: dict[str, tuple[str | None, str]] = {}
    in_args, last = False, None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if not in_args:
            continue
        if line.strip() and not line.startswith((" ", "\t")):
            break  # next section
        m = _ARG_LINE.match(line)
        if m and m.group(1).lstrip("*"):
            last = m.group(1).lstrip("*")
            args[last] = (m.group(2), m.group(3).strip())
        elif last and line.strip():
            t, d = args[last]
            args[last] = (t, f"{d} {line.strip()}".strip())
    return " ".join(summary), args


_DOC_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
              "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "dict": "object"}


@dataclass
class Tool:
    """A tool offered to the model: its OpenAI function schema and how to run it.

    `fn(name, arguments)` runs a call (`arguments` already parsed to a dict) and returns the text
    the model sees. `fn` is None for schema-only tools (the caller runs them: client-side loop).
    `strict` asks for decoding constrained to `parameters`. `permission` is the tool's own floor
    (None = Auto); a request's `agent_permission` can only make it stricter. `approve` decides an
    Ask-permission call when the request has no `agent_approval_callback` (it receives an
    `AgentToolApproval` and returns a bool or an `AgentToolApprovalDecision`; e.g. the legacy
    `CodeExecutionConfig.approval_callback`).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    fn: Callable[[str, dict[str, Any]], Any] | None = None
    strict: bool = False
    source: AgentToolSource = AgentToolSource.User
    kind: AgentToolKind = AgentToolKind.Custom
    label: str | None = None
    permission: AgentPermission | None = None
    approve: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.parameters, dict):
            raise TypeError(f"tool {self.name!r}: parameters must be a JSON-schema dict, "
                            f"got {type(self.parameters).__name__}")

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool dict `{"type": "function", "function": {...}}` given to chat templates."""
        fn: dict[str, Any] = {"name": self.name, "description": self.description, "parameters": self.parameters}
        if self.strict:
            fn["strict"] = True
        return {"type": "function", "function": fn}

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], fn: Callable[[str, dict[str, Any]], Any] | None = None,
                    **kw: Any) -> Tool:
        """A tool from an OpenAI tool dict (as `ChatCompletionRequest.parsed_tools()` returns)."""
        f = schema.get("function", schema)
        params = f.get("parameters") or {"type": "object", "properties": {}}
        return cls(name=f["name"], description=f.get("description") or "", parameters=dict(params), fn=fn,
                   strict=bool(f.get("strict", False)), **kw)

    @classmethod
    def from_function(cls, func: Callable[..., Any], name: str | None = None, description: str | None = None,
                      **kw: Any) -> Tool:
        """A tool whose arguments are `func`'s parameters: `func(**arguments)` runs a call.

        Annotations give JSON types (unannotated parameters accept anything); parameters
        without a default are required; the docstring's summary is the description and its
        `Args:` section describes each parameter.
        """
        if not callable(func):
            raise TypeError(f"a tool must be callable, got {type(func).__name__}")
        summary, docs = _doc_parts(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:
            hints = {}
        props: dict[str, Any] = {}
        required: list[str] = []
        for p in inspect.signature(func).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            prop = _type_schema(hints.get(p.name, p.annotation))
            if p.name in docs and docs[p.name][1]:
                prop["description"] = docs[p.name][1]
            if p.default is p.empty:
                required.append(p.name)
            elif p.default is None or isinstance(p.default, (str, int, float, bool)):
                prop["default"] = p.default
            props[p.name] = prop
        params: dict[str, Any] = {"type": "object", "properties": props, "required": required}

        def call(_name: str, arguments: dict[str, Any]) -> Any:
            return func(**arguments)

        tool_name = name or getattr(func, "__name__", None) or "tool"
        return cls(name=tool_name, description=description if description is not None else summary,
                   parameters=params, fn=call, **kw)

    @classmethod
    def from_callback(cls, name: str, callback: Callable[[str, dict[str, Any]], Any]) -> Tool:
        """A mistralrs `tool_callbacks` entry: `callback(name, arguments)`; schema from its docstring."""
        if not callable(callback):
            raise TypeError(f"tool_callbacks[{name!r}] must be callable (tool_name, args) -> str, "
                            f"got {type(callback).__name__}")
        summary, docs = _doc_parts(callback)
        props: dict[str, Any] = {}
        for arg, (type_text, desc) in docs.items():
            base = (type_text or "").split(",")[0].strip().lower()
            prop: dict[str, Any] = {"type": _DOC_TYPES[base]} if base in _DOC_TYPES else {}
            if desc:
                prop["description"] = desc
            props[arg] = prop
        optional = {a for a, (t, _) in docs.items() if t and "optional" in t.lower()}
        params: dict[str, Any] = {"type": "object", "properties": props,
                                  "required": [a for a in props if a not in optional]}
        return cls(name=name, description=summary or f"Call the {name} tool.", parameters=params, fn=callback)


@dataclass
class ToolCall:
    """One call the model asked for; `arguments` is the JSON object text the model produced."""

    name: str
    arguments: str = "{}"
    id: str = field(default_factory=lambda: f"call-{uuid.uuid4()}")

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; ValueError when they are not a JSON object."""
        try:
            value = decode_arguments(self.arguments)
        except ValueError as exc:
            raise ValueError(f"arguments of tool call {self.name!r} are not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments of tool call {self.name!r} must be a JSON object, got {value!r}")
        return value


@dataclass
class ToolResult:
    """What running a call produced: the text the model sees next, and how it went."""

    content: str
    status: ToolStatus = "ok"
    images_base64: list[str] = field(default_factory=list)
    file_ids: list[str] = field(default_factory=list)

    @classmethod
    def failure(cls, call: ToolCall, message: str, status: ToolStatus = "failed") -> ToolResult:
        """The error result of reference §2.2: `{"error", "tool", "status"}` as JSON."""
        return cls(json.dumps({"error": message, "tool": call.name, "status": status}), status=status)


@runtime_checkable
class ToolSource(Protocol):
    """A dynamic provider of tools (one per MCP server, say), listed when a request starts.

    `list_tools()` may be called once per request; return the same `Tool` objects when nothing
    changed. Each returned tool must carry its own `fn`.
    """

    name: str

    def list_tools(self) -> list[Tool]:
        """The tools this source offers right now."""
        ...


def run_tool(tool: Tool, call: ToolCall) -> ToolResult:
    """Run `tool.fn(call.name, arguments)`; never raises (except BaseException such as KeyboardInterrupt).

    A `str` becomes `ToolResult(content=...)`, a `ToolResult` is returned as is; any other value,
    invalid JSON arguments or an exception become `ToolResult.failure(...)` (`CancelToolCall`:
    status "denied"), which the model sees as an error it can react to.
    """
    if tool.fn is None:
        return ToolResult.failure(call, f"tool {tool.name!r} has no Python implementation (client-side tool)")
    try:
        value = tool.fn(call.name, call.parsed_arguments())
    except CancelToolCall as exc:
        return ToolResult.failure(call, exc.message, status="denied")
    except Exception as exc:
        logger.info("tool %r raised %s: %s", call.name, type(exc).__name__, exc)
        return ToolResult.failure(call, f"{type(exc).__name__}: {exc}")
    if isinstance(value, str):
        return ToolResult(content=value)
    if isinstance(value, ToolResult):
        return value
    return ToolResult.failure(call, f"tool {call.name!r} returned {type(value).__name__}, expected str")
