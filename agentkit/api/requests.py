"""Request objects of the mistralrs-compatible API (runner-api.md §1.6).

Scope: `ChatCompletionRequest`, `CompletionRequest` and `EmbeddingRequest` as dataclasses with the
wheel 0.9.5 signatures (positional order, defaults, keyword-only `adapter`), construction-time
validation with the wheel's error types and messages (messages shape, reasoning controls,
embedding inputs, numeric fields), and helpers the runner uses at send time:
`validate_grammar()`, `parsed_tools()`, `normalized_tool_choice()`, `normalized_messages()`,
`thinking_controls()`, `EmbeddingRequest.inputs()`.

Supersets of the wheel: messages keep `tool_calls`, `tool_call_id`, `name`, `reasoning_content`
(an assistant message with `tool_calls` may have `content` None); `tool_choice` also takes
"none"/"auto"/"required" or {"type": "function", "function": {"name": ...}}; `tool_schemas` also
takes dicts; `stop_seqs` also takes one string; permissions take strings; a keyword-only
`seed` (not in the wheel) makes one request's sampling reproducible, and a keyword-only
`timeout_secs` gives it a deadline (`RequestTimeoutError` when passed).

Non-goals: tokenization, chat templates, media decoding (image/audio/video parts are validated
but `normalized_messages()` rejects them unless `allow_media=True`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from agentkit.api.agent_options import ShellSkillMount, WebSearchOptions
from agentkit.api.checks import check_bool, check_float, check_instance, check_int, check_list_of, check_str
from agentkit.api.enums import AgentPermission, CodeExecutionPermission, ToolChoice, coerce_permission
from agentkit.api.files import InputFile, RequestedFile
from agentkit.api.messages import check_message, normalize_message
from agentkit.api.model_options import LoraAdapterGeneration

__all__ = ["GRAMMAR_TYPES", "REASONING_EFFORTS", "ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"]

GRAMMAR_TYPES = ("regex", "lark", "json_schema", "llguidance")
REASONING_EFFORTS = ("off", "none", "low", "medium", "high", "xhigh", "max")
_EFFORT_CANONICAL = {"off": "off", "none": "off", "low": "low", "medium": "medium", "high": "high",
                     "xhigh": "xhigh", "max": "xhigh"}
_U32_MAX = 2**32 - 1


class _SendHelpers:
    """Validation shared by chat and completion requests, plus the send-time helpers."""

    grammar: str | None
    grammar_type: str | None
    tool_schemas: list[str | dict[str, Any]] | None
    tool_choice: ToolChoice | str | dict[str, Any] | None

    def _check_common(self, owner: str) -> None:
        """Type/range checks of the sampling, grammar, tool and adapter fields (both request kinds)."""
        s: Any = self
        check_str(owner, "model", s.model)
        check_int(owner, "n_choices", s.n_choices, minimum=1)
        check_int(owner, "max_tokens", s.max_tokens, optional=True, minimum=1)
        for name in ("presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p",
                     "min_p", "dry_multiplier", "dry_base"):
            setattr(s, name, check_float(owner, name, getattr(s, name), optional=True))
        check_int(owner, "top_k", s.top_k, optional=True)
        check_int(owner, "dry_allowed_length", s.dry_allowed_length, optional=True)
        s.dry_sequence_breakers = _str_list(owner, "dry_sequence_breakers", s.dry_sequence_breakers)
        if isinstance(s.stop_seqs, str):
            s.stop_seqs = [s.stop_seqs]
        s.stop_seqs = _str_list(owner, "stop_seqs", s.stop_seqs)
        if s.stop_seqs and any(not x for x in s.stop_seqs):
            raise ValueError(f"{owner}: `stop_seqs` must not contain empty strings, got {s.stop_seqs!r}")
        s.logit_bias = _logit_bias(owner, s.logit_bias)
        check_str(owner, "grammar", s.grammar, optional=True)
        check_str(owner, "grammar_type", s.grammar_type, optional=True)
        if s.tool_schemas is not None:
            if not isinstance(s.tool_schemas, (list, tuple)):
                raise TypeError(f"{owner}: `tool_schemas` must be a list of JSON strings or dicts, "
                                f"got {type(s.tool_schemas).__name__}")
            for i, t in enumerate(s.tool_schemas):
                if not isinstance(t, (str, dict)):
                    raise TypeError(f"{owner}: `tool_schemas[{i}]` must be a JSON string or dict, got {type(t).__name__}")
            s.tool_schemas = list(s.tool_schemas)
        s.tool_choice = _tool_choice(owner, s.tool_choice)
        check_bool(owner, "truncate_sequence", s.truncate_sequence)
        check_bool(owner, "ignore_eos", s.ignore_eos)
        check_int(owner, "seed", s.seed, optional=True, minimum=None)
        s.timeout_secs = check_float(owner, "timeout_secs", s.timeout_secs, optional=True)
        if s.timeout_secs is not None and not s.timeout_secs > 0:
            raise ValueError(f"{owner}: `timeout_secs` must be a positive number of seconds, got {s.timeout_secs!r}")
        if s.adapter is not None and not isinstance(s.adapter, (str, LoraAdapterGeneration)):
            raise TypeError(f"{owner}: `adapter` must be an adapter alias (str), a LoraAdapterGeneration or None, "
                            f"got {type(s.adapter).__name__}")

    def validate_grammar(self) -> tuple[str, Any] | None:
        """Check grammar/grammar_type like mistralrs does at send time.

        Returns None without a constraint, else `(grammar_type, grammar)` where the grammar of
        `json_schema` / `llguidance` is the parsed JSON. Raises ValueError with the wheel's messages.
        """
        if self.grammar_type is None:
            if self.grammar is not None:
                raise ValueError("Grammar text is specified but not grammar type")
            return None
        if self.grammar is None:
            raise ValueError("Grammar type is specified but not grammar text")
        if self.grammar_type not in GRAMMAR_TYPES:
            raise ValueError("Grammar type is specified but is not `regex`, `lark`, `json_schema`, nor `llguidance` "
                             f"(got grammar_type={self.grammar_type!r})")
        if self.grammar_type == "json_schema":
            try:
                return "json_schema", json.loads(self.grammar)
            except ValueError as exc:
                raise ValueError(f"Failed to parse JSON schema: {exc}") from None
        if self.grammar_type == "llguidance":
            try:
                value = json.loads(self.grammar)
            except ValueError as exc:
                raise ValueError(f"Failed to parse JSON llguidance object: {exc}") from None
            if not isinstance(value, dict) or not isinstance(value.get("grammars"), list):
                raise ValueError('Failed to parse JSON llguidance object: expected {"grammars": [...]}')
            return "llguidance", value
        return self.grammar_type, self.grammar

    def parsed_tools(self) -> list[dict[str, Any]]:
        """`tool_schemas` as OpenAI tool dicts `{"type": "function", "function": {"name", ...}}`.

        A bare function dict (with "name") is wrapped. ValueError naming the schema on invalid
        JSON, a missing/empty `function.name`, a non-"function" type or a duplicate name.
        """
        tools: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, raw in enumerate(self.tool_schemas or []):
            label = f"tool_schemas[{i}]"
            if isinstance(raw, str):
                try:
                    obj = json.loads(raw)
                except ValueError as exc:
                    raise ValueError(f"{label} is not valid JSON ({exc}): {raw[:120]!r}") from None
            else:
                obj = copy.deepcopy(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"{label} must be a JSON object, got {obj!r}")
            if "function" not in obj and "name" in obj:
                obj = {"type": "function", "function": obj}
            if obj.get("type", "function") != "function":
                raise ValueError(f"{label} has type {obj.get('type')!r}; only 'function' tools are supported")
            fn = obj.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f'{label} needs {{"type": "function", "function": {{"name": ...}}}}, got {raw!r}')
            if name in seen:
                raise ValueError(f"{label}: duplicate tool name {name!r}")
            seen.add(name)
            obj["type"] = "function"
            tools.append(obj)
        return tools

    def normalized_tool_choice(self) -> str | dict[str, Any]:
        """"auto" (also for None), "none", "required", or {"type": "function", "function": {"name": ...}}."""
        tc = self.tool_choice
        if tc is None or tc == ToolChoice.Auto:
            return "auto"
        if tc == ToolChoice.NoTools:
            return "none"
        if isinstance(tc, dict):
            return copy.deepcopy(tc)
        return str(tc)


def _str_list(owner: str, name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{owner}: `{name}` must be a list of str, got {type(value).__name__} {value!r}")
    return [check_str(owner, f"{name}[{i}]", v) for i, v in enumerate(value)]


def _logit_bias(owner: str, value: Any) -> dict[int, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{owner}: `logit_bias` must be a dict[int, float] (token id -> bias), got {type(value).__name__}")
    out: dict[int, float] = {}
    for k, v in value.items():
        key = int(k) if isinstance(k, str) and k.strip().isdigit() else k
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(f"{owner}: `logit_bias` keys must be token ids (int), got {k!r}")
        if not 0 <= key <= _U32_MAX:
            raise ValueError(f"{owner}: `logit_bias` token id {key} is outside 0..{_U32_MAX}")
        out[key] = check_float(owner, f"logit_bias[{key}]", v)
    return out


def _tool_choice(owner: str, value: Any) -> Any:
    if value is None or isinstance(value, ToolChoice):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("none", "auto"):
            return ToolChoice.NoTools if key == "none" else ToolChoice.Auto
        if key == "required":
            return "required"
        raise ValueError(f"{owner}: `tool_choice` must be ToolChoice, 'none', 'auto', 'required' or "
                         f'{{"type": "function", "function": {{"name": ...}}}}, got {value!r}')
    if isinstance(value, dict):
        fn = value.get("function")
        if value.get("type") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            return {"type": "function", "function": {"name": fn["name"]}}
        raise ValueError(f'{owner}: a dict `tool_choice` must be {{"type": "function", "function": {{"name": ...}}}}, '
                         f"got {value!r}")
    raise TypeError(f"{owner}: `tool_choice` must be ToolChoice, a str or a dict, got {type(value).__name__}")


@dataclass
class ChatCompletionRequest(_SendHelpers):
    """An OpenAI-style chat request (`Runner.send_chat_completion_request`); `model` is ignored."""

    messages: str | list[dict[str, Any]]
    model: str
    logprobs: bool = False
    n_choices: int = 1
    logit_bias: dict[int, float] | None = None
    top_logprobs: int | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    stop_seqs: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    grammar: str | None = None
    grammar_type: str | None = None
    min_p: float | None = None
    tool_schemas: list[str | dict[str, Any]] | None = None
    tool_choice: ToolChoice | str | dict[str, Any] | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: list[str] | None = None
    web_search_options: WebSearchOptions | None = None
    enable_thinking: bool | None = None
    truncate_sequence: bool = False
    reasoning_effort: str | None = None
    max_tool_rounds: int | None = None
    tool_dispatch_url: str | None = None
    enable_code_execution: bool = False
    enable_shell: bool = False
    shell_skills: list[ShellSkillMount] | None = None
    agent_permission: AgentPermission | str | None = None
    agent_approval_callback: Callable[..., Any] | None = None
    code_execution_permission: CodeExecutionPermission | str | None = None
    session_id: str | None = None
    files: list[RequestedFile] | None = None
    input_files: list[InputFile] | None = None
    ignore_eos: bool = False
    _: KW_ONLY
    adapter: str | LoraAdapterGeneration | None = None
    seed: int | None = None
    timeout_secs: float | None = None

    def __post_init__(self) -> None:
        owner = "ChatCompletionRequest"
        if isinstance(self.messages, str):
            pass
        elif isinstance(self.messages, list):
            if not self.messages:
                raise ValueError(f"{owner}: `messages` must not be empty")
            for i, msg in enumerate(self.messages):
                check_message(i, msg)
            self.messages = list(self.messages)
        else:
            raise TypeError("Expected a string or list of dicts.")
        self._check_common(owner)
        check_bool(owner, "logprobs", self.logprobs)
        check_int(owner, "top_logprobs", self.top_logprobs, optional=True, maximum=20)
        check_bool(owner, "stream", self.stream)
        check_instance(owner, "web_search_options", self.web_search_options, WebSearchOptions)
        check_bool(owner, "enable_thinking", self.enable_thinking, optional=True)
        if self.reasoning_effort is not None:
            if not isinstance(self.reasoning_effort, str):
                raise TypeError(f"{owner}: `reasoning_effort` must be a str or None, got {type(self.reasoning_effort).__name__}")
            effort = _EFFORT_CANONICAL.get(self.reasoning_effort.strip().lower())
            if effort is None:
                raise ValueError(f"invalid reasoning effort `{self.reasoning_effort}`; expected one of: "
                                 + ", ".join(REASONING_EFFORTS))
            self.reasoning_effort = effort
        self.thinking_controls()
        check_int(owner, "max_tool_rounds", self.max_tool_rounds, optional=True)
        check_str(owner, "tool_dispatch_url", self.tool_dispatch_url, optional=True)
        check_bool(owner, "enable_code_execution", self.enable_code_execution)
        check_bool(owner, "enable_shell", self.enable_shell)
        self.shell_skills = check_list_of(owner, "shell_skills", self.shell_skills, ShellSkillMount)
        if self.shell_skills:
            self.enable_shell = True
        if self.agent_permission is not None:
            self.agent_permission = coerce_permission(self.agent_permission, AgentPermission)
        if self.code_execution_permission is not None:
            self.code_execution_permission = coerce_permission(self.code_execution_permission, CodeExecutionPermission)
        if self.agent_approval_callback is not None and not callable(self.agent_approval_callback):
            raise TypeError(f"{owner}: `agent_approval_callback` must be callable, got {self.agent_approval_callback!r}")
        check_str(owner, "session_id", self.session_id, optional=True)
        self.files = check_list_of(owner, "files", self.files, RequestedFile)
        self.input_files = check_list_of(owner, "input_files", self.input_files, InputFile)

    def thinking_controls(self) -> tuple[bool, str | None]:
        """`(enable_thinking, reasoning_effort)` after mistralrs's rules: effort `off` means thinking
        off; both None means thinking on; a contradiction raises ValueError."""
        effort = self.reasoning_effort
        if effort is None:
            return (True if self.enable_thinking is None else self.enable_thinking), None
        if self.enable_thinking is True and effort == "off":
            raise ValueError("reasoning effort `off` conflicts with enable_thinking=true")
        if self.enable_thinking is False and effort != "off":
            raise ValueError(f"reasoning effort `{effort}` conflicts with enable_thinking=false")
        return effort != "off", effort

    def effective_permission(self) -> AgentPermission | None:
        """`agent_permission`, else the legacy `code_execution_permission` (as AgentPermission), else None."""
        if self.agent_permission is not None:
            return coerce_permission(self.agent_permission, AgentPermission)
        if self.code_execution_permission is not None:
            return coerce_permission(self.code_execution_permission, AgentPermission)
        return None

    def normalized_messages(self, allow_media: bool = False) -> list[dict[str, Any]]:
        """Messages as `[{"role", "content": str, ...}]` (fresh copies).

        A str becomes one user message; a one-part list becomes its text; text parts of a
        multi-part message are joined with one space. `tool_calls` / `tool_call_id` / `name` /
        `reasoning_content` are kept; tool-call `arguments` given as a JSON object string are
        parsed to a dict. Media parts raise ValueError unless `allow_media`, in which case they are
        listed under `"media"` as `{"type": "image"|"audio"|"video", "url"}`.
        """
        if isinstance(self.messages, str):
            return [{"role": "user", "content": self.messages}]
        return [normalize_message(m, allow_media) for m in self.messages]


@dataclass
class CompletionRequest(_SendHelpers):
    """A raw-prompt completion request (`Runner.send_completion_request`); `model` is ignored.

    As in mistralrs, the engine samples `n_choices` sequences and returns the top `best_of` by
    cumulative logprob; `echo_prompt` prepends the prompt and `suffix` is appended to each text.
    """

    prompt: str
    model: str
    best_of: int | None = 1
    echo_prompt: bool = False
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    max_tokens: int | None = None
    n_choices: int = 1
    stop_seqs: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    suffix: str | None = None
    top_k: int | None = None
    grammar: str | None = None
    grammar_type: str | None = None
    min_p: float | None = None
    tool_schemas: list[str | dict[str, Any]] | None = None
    tool_choice: ToolChoice | str | dict[str, Any] | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: list[str] | None = None
    truncate_sequence: bool = False
    ignore_eos: bool = False
    _: KW_ONLY
    adapter: str | LoraAdapterGeneration | None = None
    seed: int | None = None
    timeout_secs: float | None = None

    def __post_init__(self) -> None:
        owner = "CompletionRequest"
        check_str(owner, "prompt", self.prompt)
        check_int(owner, "best_of", self.best_of, optional=True, minimum=1)
        check_bool(owner, "echo_prompt", self.echo_prompt)
        check_str(owner, "suffix", self.suffix, optional=True)
        self._check_common(owner)


@dataclass
class EmbeddingRequest:
    """Inputs to embed (`Runner.send_embedding_request`): str, list[str], list[int] or list[list[int]]."""

    input: str | list[str] | list[int] | list[list[int]]
    truncate_sequence: bool = False

    def __post_init__(self) -> None:
        self._inputs = _embedding_inputs(self.input)
        check_bool("EmbeddingRequest", "truncate_sequence", self.truncate_sequence)

    def inputs(self) -> list[str] | list[list[int]]:
        """One entry per vector to compute, in order: prompts, or token-id lists."""
        return copy.deepcopy(self._inputs)


def _embedding_inputs(obj: Any) -> list[str] | list[list[int]]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, str) for x in obj):
            if not obj:
                raise ValueError("embedding input sequence must not be empty")
            return list(obj)
        if all(_is_int(x) for x in obj):
            return [_tokens(obj)]
        if all(isinstance(x, (list, tuple)) and all(_is_int(t) for t in x) for x in obj):
            return [_tokens(x) for x in obj]
    raise TypeError("embedding input must be a string, list[str], list[int], or list[list[int]]")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tokens(seq: Any) -> list[int]:
    if not seq:
        raise ValueError("token list must contain at least one element")
    for t in seq:
        if not 0 <= t <= _U32_MAX:
            raise ValueError(f"token value {t} is outside the allowed unsigned 32-bit range")
    return list(seq)
