"""Tool-call detection in generated text (runner-api.md §1.7 `ToolCallResponse`, §1.9 last bullet).

Scope: `detect_family` (which tool-call markup a model emits, from its chat template, model type as
fallback), `parse_tool_calls` (a whole reply -> content with the markup removed + calls),
`StreamingToolParser` (the same result from text deltas, holding back anything that may start
tool-call markup) and `to_responses` (calls -> `ToolCallResponse` with "call-<uuid4>" ids) and `looks_like_call` (text
that tried to call a tool and failed: markup in some other spelling, a call object in prose).
Families: "hermes" (`<tool_call>{...}</tool_call>`: Qwen, Hermes, SmolLM; a missing closing tag
at the end is accepted), "llama3" (`<|python_tag|>{...}`), "mistral" (`[TOOL_CALLS][{...}]` and
`[TOOL_CALLS]name[ARGS]{...}`), "generic" (no markup). Every family also accepts a reply that is
*wholly* a bare JSON call object or list of them (optionally as one ```json fence). A call object
has "name" (or "function") and "arguments" (or "parameters"), arguments possibly a stringified
JSON object; `arguments` is re-serialised with `json.dumps(..., ensure_ascii=False)`. Malformed
markup stays in the content; calls to names outside `tool_names` are dropped (listed in `dropped`).

Non-goals: Liquid/Hunyuan/DeepSeek/Gemma 4/Harmony/Muse formats, Llama's pythonic built-in tool
syntax (`brave_search.call(...)`), validating arguments against tool schemas, running tools.
The markers are special tokens for Llama/Mistral: decode with them kept. Pure Python, no torch.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from agentkit.api.enums import ToolCallType
from agentkit.api.responses import CalledFunction, ToolCallResponse
from agentkit.tools import decode_arguments

__all__ = ["FAMILIES", "ParsedCall", "ParsedOutput", "StreamingToolParser", "detect_family", "looks_like_call",
           "parse_tool_calls", "to_responses"]

FAMILIES = ("hermes", "llama3", "mistral", "generic")
_MARKERS: dict[str, str | None] = {"hermes": "<tool_call>", "llama3": "<|python_tag|>",
                                   "mistral": "[TOOL_CALLS]", "generic": None}
_HERMES_CLOSE = "</tool_call>"
_END_TOKENS = ("<|eom_id|>", "<|eot_id|>", "</s>")
_CALL_KEYS = frozenset({"name", "function", "arguments", "parameters", "type", "id"})
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)
_MISTRAL_NAMED = re.compile(r"\s*([A-Za-z0-9_.:\-]+)(?:\[CALL_ID\][^\[]*)?\[ARGS\]\s*")
_DECODER = json.JSONDecoder()
_CALL_LIKE = re.compile(r'</?\s*tool[\s_-]*(call|response)|\[TOOL_CALLS\]|<\|python_tag\|>'
                        r'|\{\s*"(name|function)"\s*:\s*"[^"]*"\s*,\s*"(arguments|parameters)"\s*:', re.IGNORECASE)
_TEMPLATE_MARKERS = (("<tool_call>", "hermes"), ("[TOOL_CALLS]", "mistral"),
                     ("<|python_tag|>", "llama3"), ("<|eom_id|>", "llama3"))
_MODEL_TYPES = (("qwen", "hermes"), ("smollm", "hermes"), ("hermes", "hermes"), ("mistral", "mistral"),
                ("mixtral", "mistral"), ("pixtral", "mistral"), ("llama", "llama3"))


@dataclass(frozen=True)
class ParsedCall:
    """One detected tool call: the function name and its arguments as a JSON object string."""

    name: str
    arguments: str


@dataclass
class ParsedOutput:
    """Result of parsing: remaining `content` (None if empty), the `calls`, and `dropped` unknown names."""

    content: str | None
    calls: list[ParsedCall] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def detect_family(chat_template: str | None, model_type: str | None = None) -> str:
    """The tool-call family of a model: markers in its chat template first, else its `model_type`.

    "<tool_call>" -> "hermes", "[TOOL_CALLS]" -> "mistral", "<|python_tag|>"/"<|eom_id|>" ->
    "llama3"; model types qwen*/smollm*/hermes -> "hermes", mistral/mixtral/pixtral -> "mistral",
    *llama* -> "llama3"; anything else -> "generic".
    """
    for value, label in ((chat_template, "chat_template"), (model_type, "model_type")):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label} must be a str or None, got {type(value).__name__}")
    for marker, family in _TEMPLATE_MARKERS:
        if chat_template and marker in chat_template:
            return family
    kind = (model_type or "").lower()
    return next((family for key, family in _MODEL_TYPES if key in kind), "generic")


def _as_call(obj: Any, strict: bool) -> ParsedCall | None:
    """`obj` as a call, or None. `strict` (bare JSON): only call keys, and arguments must be present."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" not in obj:  # OpenAI-style wrapper
        if strict and not set(obj) <= _CALL_KEYS:
            return None
        obj = obj["function"]
    if strict and not set(obj) <= _CALL_KEYS:
        return None
    name = obj.get("name", obj.get("function"))
    if not isinstance(name, str) or not name.strip():
        return None
    key = "arguments" if "arguments" in obj else "parameters"
    if strict and key not in obj:
        return None
    args = obj.get(key)
    if args is None:
        args = {}
    else:
        try:
            args = decode_arguments(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ParsedCall(name=name.strip(), arguments=json.dumps(args, ensure_ascii=False))


def _calls_from(value: Any, strict: bool) -> list[ParsedCall] | None:
    """A call object or non-empty list of them as calls; None if anything is not a call."""
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, strict) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _skip(s: str, i: int, chars: str = " \t\r\n;,") -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _leading_calls(s: str, i: int) -> tuple[list[ParsedCall], int]:
    """Calls from consecutive JSON values at `s[i:]` (separated by whitespace , ;) and the end index."""
    calls: list[ParsedCall] = []
    while True:
        j = _skip(s, i)
        try:
            value, k = _DECODER.raw_decode(s, j)
        except ValueError:
            return calls, i
        got = _calls_from(value, strict=False)
        if got is None:
            return calls, i
        calls += got
        i = k


def _tail(s: str) -> str:
    """Text after parsed calls, with end-of-message tokens removed from its start."""
    s = s.lstrip()
    while s.startswith(_END_TOKENS):
        s = s[next(len(t) for t in _END_TOKENS if s.startswith(t)):].lstrip()
    return s


def _bare_verdict(s: str, decode: bool) -> bool | None:
    """False once `s` (a reply held from its start) can no longer be a bare JSON reply; True if a
    complete JSON value was decoded (with `decode`) and it still can; else None (undecided)."""
    fenced = s.startswith("```")
    if not fenced:
        if "```".startswith(s):
            return None
        if s[0] == "`":
            return False
    body = s
    if fenced:
        body = s[3:]
        if body[:4].lower() == "json":
            body = body[4:]
        elif len(body) < 4 and "json".startswith(body.lower()):
            return None
    body = body.lstrip()
    if not body:
        return None
    if body[0] not in "{[":
        return False
    rest = body[1:].lstrip()
    if rest and rest[0] != ('"' if body[0] == "{" else "{"):
        return False
    if decode:
        try:
            tail = body[_DECODER.raw_decode(body)[1]:].strip()
        except ValueError:
            return None
        if tail and not (fenced and ("```".startswith(tail) or (tail.startswith("```") and not tail[3:].strip()))):
            return False
        return True
    return None


class StreamingToolParser:
    """Incremental tool-call parser: `push(delta)` returns content safe to emit now, `finish()` the rest.

    Held back: a partial or complete tool-call marker and its call until it is parsed (Llama and
    Mistral calls until `finish`), leading whitespace, and a reply that starts like bare JSON
    (`{"`, `[{`, a fence) until it is known not to be one. Any chunking gives the same calls,
    and the same content up to surrounding whitespace, as `parse_tool_calls` on the whole text.
    """

    def __init__(self, family: str, tool_names: Collection[str] | None = None) -> None:
        if family not in _MARKERS:
            raise ValueError(f"unknown tool-call family {family!r}; expected one of {', '.join(FAMILIES)} "
                             "(see detect_family)")
        if isinstance(tool_names, str):
            raise TypeError(f"tool_names must be a collection of names, not the string {tool_names!r}; "
                            "wrap it in a list")
        self.family = family
        self._marker = _MARKERS[family]
        self._names = None if tool_names is None else frozenset(tool_names)
        self._state = "start"  # start -> bare | text; text <-> call
        self._buf = ""
        self._decoded = False
        self._finished = False
        self._calls: list[ParsedCall] = []
        self._dropped: list[str] = []

    def push(self, delta: str) -> str:
        """Add a text delta; return the content that can be emitted now (possibly "")."""
        if self._finished:
            raise RuntimeError("StreamingToolParser.push() called after finish(); create a new parser")
        if not isinstance(delta, str):
            raise TypeError(f"delta must be a str, got {type(delta).__name__}")
        self._buf += delta
        if self._state == "start":
            self._buf = self._buf.lstrip()
            if not self._buf:
                return ""
            self._state = "bare" if self._buf[0] in "{[`" else "text"
        if self._state == "bare":
            verdict = _bare_verdict(self._buf, self._decoded or any(c in delta for c in "}]`"))
            if verdict is not False:
                self._decoded = bool(verdict)
                return ""
            self._state = "text"
        return self._scan()

    def finish(self) -> ParsedOutput:
        """End of generation: the content not yet emitted (None if blank), all calls and dropped names."""
        if self._finished:
            raise RuntimeError("StreamingToolParser.finish() called twice")
        self._finished = True
        out = ""
        if self._state == "bare":
            calls = self._bare_calls(self._buf)
            if calls is None:
                self._state = "text"
                out = self._scan()
            else:
                self._take(calls)
                self._buf = ""
        if self._state == "text":
            out += self._buf
        elif self._state == "call":
            out += self._hermes_block(self._buf, len(self._buf)) if self.family == "hermes" else self._finish_call()
        self._buf = ""
        return ParsedOutput(content=out if out.strip() else None, calls=list(self._calls),
                            dropped=list(self._dropped))

    def _take(self, calls: list[ParsedCall]) -> None:
        for call in calls:
            if self._names is None or call.name in self._names:
                self._calls.append(call)
            else:
                self._dropped.append(call.name)

    def _bare_calls(self, text: str) -> list[ParsedCall] | None:
        text = text.strip()
        fence = _FENCE.fullmatch(text)
        try:
            value = json.loads(fence.group(1) if fence else text)
        except ValueError:
            return None
        calls = _calls_from(value, strict=True)
        if calls is None or (self._names is not None and not any(c.name in self._names for c in calls)):
            return None
        return calls

    def _scan(self) -> str:
        """Emit text up to a marker (or a partial one), parsing complete Hermes blocks on the way."""
        out: list[str] = []
        marker = self._marker
        while True:
            if self._state == "text":
                if marker is None:
                    out.append(self._buf)
                    self._buf = ""
                    break
                i = self._buf.find(marker)
                if i < 0:
                    keep = next((k for k in range(min(len(self._buf), len(marker) - 1), 0, -1)
                                 if self._buf.endswith(marker[:k])), 0)
                    out.append(self._buf[:len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep:]
                    break
                out.append(self._buf[:i])
                self._buf = self._buf[i:]
                self._state = "call"
            if self.family != "hermes":
                break  # Llama / Mistral calls are held until finish()
            start = len(marker)  # type: ignore[arg-type]
            ends = [(j, skip) for j, skip in ((self._buf.find(_HERMES_CLOSE, start), len(_HERMES_CLOSE)),
                                              (self._buf.find(marker, start), 0)) if j >= 0]  # type: ignore[arg-type]
            if not ends:
                break
            end, skip = min(ends)
            out.append(self._hermes_block(self._buf[:end + skip], end))
            self._buf = self._buf[end + skip:]
            self._state = "text"
        return "".join(out)

    def _hermes_block(self, raw: str, end: int) -> str:
        """Take the calls of `<tool_call>...` block `raw` (JSON in raw[11:end]); return raw if malformed."""
        inner = raw[len("<tool_call>"):end]
        calls, k = _leading_calls(inner, 0)
        if not calls or inner[k:].strip():
            return raw
        self._take(calls)
        return ""

    def _finish_call(self) -> str:
        """Parse held `<|python_tag|>` / `[TOOL_CALLS]` text; return what remains as content."""
        s, i, calls = self._buf, 0, []
        marker: str = self._marker  # type: ignore[assignment]
        while s.startswith(marker, i):
            got, k = _leading_calls(s, i + len(marker))
            if not got and self.family == "mistral":
                m = _MISTRAL_NAMED.match(s, i + len(marker))
                try:
                    args, k = _DECODER.raw_decode(s, m.end()) if m else (None, 0)
                    call = _as_call({"name": m.group(1), "arguments": args}, strict=False) if m else None
                except ValueError:
                    call = None
                got = [call] if call is not None else []
            if not got:
                break
            calls += got
            i = len(s) - len(_tail(s[k:]))
        if not calls:
            return s
        self._take(calls)
        return s[i:]


def parse_tool_calls(text: str, family: str, tool_names: Collection[str] | None = None) -> ParsedOutput:
    """Split a whole reply into content (markup removed, stripped; None if empty) and tool calls.

    `family` is one of FAMILIES (see `detect_family`); with `tool_names`, calls to other names
    are dropped and listed in `dropped`. A bare JSON reply counts only if it is the whole reply
    and (with `tool_names`) names at least one known tool.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    parser = StreamingToolParser(family, tool_names)
    head = parser.push(text)
    result = parser.finish()
    result.content = (head + (result.content or "")).strip() or None
    return result


def to_responses(calls: list[ParsedCall]) -> list[ToolCallResponse]:
    """`ToolCallResponse`s (index = position, id "call-<uuid4>", type Function) for parsed calls."""
    return [ToolCallResponse(index=i, id=f"call-{uuid.uuid4()}", tp=ToolCallType.Function,
                             function=CalledFunction(name=c.name, arguments=c.arguments))
            for i, c in enumerate(calls)]


def looks_like_call(text: str | None) -> bool:
    """True when `text` (a reply's content after parsing) still holds tool-call or tool-result
    markup in any spelling (`<tool_call>`, `<tool-call id=...>`, `</tool_response>`,
    `[TOOL_CALLS]`) or a `{"name": ..., "arguments": ...}` call object: a call that failed."""
    return bool(text) and _CALL_LIKE.search(text) is not None  # type: ignore[arg-type]
