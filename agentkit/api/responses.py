"""Response objects of the mistralrs-compatible API (runner-api.md §1.7).

Scope: every object a `Runner` method returns, as frozen keyword-only dataclasses with the
wheel's field names (read-only, like the wheel's getters), `Usage.from_counts` (totals and rates
computed as the engine does), `Usage.__add__` (agentic runs sum their rounds) and `to_dict()`
giving OpenAI-shaped, JSON-safe dicts.

Non-goals: building responses from engine output (the chat layer does that); parsing tool calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.api.enums import ToolCallType

if TYPE_CHECKING:
    from agentkit.api.files import File

__all__ = [
    "AgenticToolCallRecord",
    "CalibrationStatus",
    "CalledFunction",
    "ChatCompletionChunkResponse",
    "ChatCompletionResponse",
    "Choice",
    "ChunkChoice",
    "CompletionChoice",
    "CompletionResponse",
    "Delta",
    "ImageChoice",
    "ImageGenerationResponse",
    "Logprobs",
    "PromptTokensDetails",
    "ResponseLogprob",
    "ResponseMessage",
    "SpeculativeUsage",
    "SpeechGenerationResponse",
    "ToolCallResponse",
    "TopLogprob",
    "Usage",
]

@dataclass(frozen=True, kw_only=True)
class PromptTokensDetails:
    """Prompt-token breakdown: `cached_tokens` served from the prefix cache."""

    cached_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"cached_tokens": self.cached_tokens}


@dataclass(frozen=True, kw_only=True)
class SpeculativeUsage:
    """agentkit extension: what speculative decoding did for a request (all choices, all rounds).

    `drafted_tokens` draft tokens were verified, `accepted_tokens` of them kept, in
    `verify_steps` forward passes; `mean_acceptance_length` is the tokens emitted per verify step
    (accepted drafts + the target's own token), 1.0 when no draft was ever kept.
    """

    drafted_tokens: int
    accepted_tokens: int
    verify_steps: int

    @property
    def mean_acceptance_length(self) -> float:
        return (self.accepted_tokens + self.verify_steps) / self.verify_steps if self.verify_steps else 0.0

    @property
    def acceptance_rate(self) -> float:
        """Fraction of draft tokens kept."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0

    def __add__(self, other: SpeculativeUsage) -> SpeculativeUsage:
        return SpeculativeUsage(drafted_tokens=self.drafted_tokens + other.drafted_tokens,
                                accepted_tokens=self.accepted_tokens + other.accepted_tokens,
                                verify_steps=self.verify_steps + other.verify_steps)

    def to_dict(self) -> dict[str, Any]:
        return {"drafted_tokens": self.drafted_tokens, "accepted_tokens": self.accepted_tokens,
                "verify_steps": self.verify_steps, "mean_acceptance_length": self.mean_acceptance_length}


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Token counts and timings of one request (group totals for n > 1; summed over agentic rounds)."""

    completion_tokens: int
    prompt_tokens: int
    total_tokens: int
    avg_tok_per_sec: float
    avg_prompt_tok_per_sec: float
    avg_compl_tok_per_sec: float
    total_time_sec: float
    total_prompt_time_sec: float
    total_completion_time_sec: float
    prompt_tokens_details: PromptTokensDetails | None = None
    speculative: SpeculativeUsage | None = None  # agentkit extension; None when nothing speculated

    @classmethod
    def from_counts(cls, prompt_tokens: int, completion_tokens: int, prompt_time_s: float, completion_time_s: float,
                    cached_tokens: int | None = None, speculative: SpeculativeUsage | None = None) -> Usage:
        """Usage with totals and rates derived as the engine does (a rate is 0.0 when its time is 0).

        `total_tokens` = prompt + completion, `total_time_sec` = prompt + completion time,
        `avg_tok_per_sec` = total_tokens / total_time, and per-phase rates likewise.
        """
        total = prompt_tokens + completion_tokens
        total_time = prompt_time_s + completion_time_s
        return cls(
            completion_tokens=completion_tokens, prompt_tokens=prompt_tokens, total_tokens=total,
            avg_tok_per_sec=_rate(total, total_time), avg_prompt_tok_per_sec=_rate(prompt_tokens, prompt_time_s),
            avg_compl_tok_per_sec=_rate(completion_tokens, completion_time_s), total_time_sec=total_time,
            total_prompt_time_sec=prompt_time_s, total_completion_time_sec=completion_time_s,
            prompt_tokens_details=None if cached_tokens is None else PromptTokensDetails(cached_tokens=cached_tokens),
            speculative=speculative,
        )

    def __add__(self, other: Usage) -> Usage:
        """Sum of two usages (counts and times added, rates recomputed, cached tokens summed)."""
        if not isinstance(other, Usage):
            return NotImplemented
        cached = [u.prompt_tokens_details.cached_tokens for u in (self, other) if u.prompt_tokens_details]
        specs = [u.speculative for u in (self, other) if u.speculative is not None]
        return Usage.from_counts(self.prompt_tokens + other.prompt_tokens,
                                 self.completion_tokens + other.completion_tokens,
                                 self.total_prompt_time_sec + other.total_prompt_time_sec,
                                 self.total_completion_time_sec + other.total_completion_time_sec,
                                 cached_tokens=sum(cached) if cached else None,
                                 speculative=specs[0] + specs[1] if len(specs) == 2 else (specs or [None])[0])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens, "avg_tok_per_sec": self.avg_tok_per_sec,
            "avg_prompt_tok_per_sec": self.avg_prompt_tok_per_sec,
            "avg_compl_tok_per_sec": self.avg_compl_tok_per_sec, "total_time_sec": self.total_time_sec,
            "total_prompt_time_sec": self.total_prompt_time_sec,
            "total_completion_time_sec": self.total_completion_time_sec,
        }
        if self.prompt_tokens_details is not None:
            out["prompt_tokens_details"] = self.prompt_tokens_details.to_dict()
        if self.speculative is not None:
            out["speculative"] = self.speculative.to_dict()
        return out


@dataclass(frozen=True, kw_only=True)
class CalledFunction:
    """Function name and JSON-string arguments of a tool call."""

    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, kw_only=True)
class ToolCallResponse:
    """A tool call the model made; the type is in `tp` (as the wheel), also readable as `type`."""

    index: int
    id: str
    tp: ToolCallType = ToolCallType.Function
    function: CalledFunction

    @property
    def type(self) -> str:
        """Serialized type, always "function"."""
        return "function"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "type": self.type, "function": self.function.to_dict()}


@dataclass(frozen=True, kw_only=True)
class TopLogprob:
    """An alternative token: `token` is the token *id* (as the wheel), `bytes` its text."""

    token: int
    logprob: float
    bytes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes}


@dataclass(frozen=True, kw_only=True)
class ResponseLogprob:
    """Logprob of one generated token (text), its UTF-8 bytes and the top alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "bytes": self.bytes,
                "top_logprobs": [t.to_dict() for t in self.top_logprobs]}


@dataclass(frozen=True, kw_only=True)
class Logprobs:
    """Per-token logprobs of a choice."""

    content: list[ResponseLogprob] | None

    def to_dict(self) -> dict[str, Any]:
        return {"content": None if self.content is None else [c.to_dict() for c in self.content]}


def _calls(calls: list[ToolCallResponse] | None) -> list[dict[str, Any]] | None:
    return None if calls is None else [c.to_dict() for c in calls]


@dataclass(frozen=True, kw_only=True)
class ResponseMessage:
    """The assistant message of a choice (content stripped of leading whitespace)."""

    content: str | None
    role: str = "assistant"
    tool_calls: list[ToolCallResponse] | None = None
    reasoning_content: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content, "tool_calls": _calls(self.tool_calls)}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


@dataclass(frozen=True, kw_only=True)
class Choice:
    """One choice of a chat response; `finish_reason` is stop, length, tool_calls or canceled."""

    finish_reason: str
    index: int
    message: ResponseMessage
    logprobs: Logprobs | None = None
    stop_sequence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "message": self.message.to_dict(), "finish_reason": self.finish_reason,
                "logprobs": None if self.logprobs is None else self.logprobs.to_dict(),
                "stop_sequence": self.stop_sequence}


@dataclass(frozen=True, kw_only=True)
class AgenticToolCallRecord:
    """One tool executed by the server-side agent loop (one per round)."""

    round: int
    name: str
    arguments: str
    result_content: str
    result_images_base64: list[str] = field(default_factory=list)
    file_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "name": self.name, "arguments": self.arguments,
                "result_content": self.result_content, "result_images_base64": list(self.result_images_base64),
                "file_ids": list(self.file_ids)}


def _extras(out: dict[str, Any], **values: Any) -> dict[str, Any]:
    for key, value in values.items():
        if value is not None:
            out[key] = [v.to_dict() for v in value] if isinstance(value, list) else value
    return out


@dataclass(frozen=True, kw_only=True)
class ChatCompletionResponse:
    """Result of a non-streaming chat request."""

    id: str
    choices: list[Choice]
    created: int
    model: str
    usage: Usage
    system_fingerprint: str = "local"
    object: str = "chat.completion"
    adapter_generation: str | None = None
    agentic_tool_calls: list[AgenticToolCallRecord] | None = None
    files: list[File] | None = None
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI `chat.completion` JSON (plus the mistralrs/agentkit extras when set)."""
        out = {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
               "system_fingerprint": self.system_fingerprint, "choices": [c.to_dict() for c in self.choices],
               "usage": self.usage.to_dict()}
        return _extras(out, adapter_generation=self.adapter_generation, session_id=self.session_id,
                       agentic_tool_calls=self.agentic_tool_calls, files=self.files)


@dataclass(frozen=True, kw_only=True)
class Delta:
    """Incremental message content of a stream chunk."""

    content: str | None
    role: str = "assistant"
    tool_calls: list[ToolCallResponse] | None = None
    reasoning_content: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls is not None:
            out["tool_calls"] = _calls(self.tool_calls)
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


@dataclass(frozen=True, kw_only=True)
class ChunkChoice:
    """One choice's delta in a stream chunk (`logprobs` is the single token's logprob)."""

    finish_reason: str | None
    index: int
    delta: Delta
    logprobs: ResponseLogprob | None = None
    stop_sequence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "delta": self.delta.to_dict(), "finish_reason": self.finish_reason,
                "logprobs": None if self.logprobs is None else {"content": [self.logprobs.to_dict()]},
                "stop_sequence": self.stop_sequence}


@dataclass(frozen=True, kw_only=True)
class ChatCompletionChunkResponse:
    """One streamed chunk; `usage` (and `session_id` and `files` of an agentic run) only on the final chunk."""

    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    system_fingerprint: str = "local"
    object: str = "chat.completion.chunk"
    usage: Usage | None = None
    adapter_generation: str | None = None
    session_id: str | None = None
    files: list[File] | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI `chat.completion.chunk` JSON."""
        out = {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
               "system_fingerprint": self.system_fingerprint, "choices": [c.to_dict() for c in self.choices],
               "usage": None if self.usage is None else self.usage.to_dict()}
        return _extras(out, adapter_generation=self.adapter_generation, session_id=self.session_id,
                       files=self.files)


@dataclass(frozen=True, kw_only=True)
class CompletionChoice:
    """One choice of a completion response (`logprobs` is always None, as mistralrs)."""

    finish_reason: str
    index: int
    text: str
    logprobs: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "text": self.text, "finish_reason": self.finish_reason, "logprobs": self.logprobs}


@dataclass(frozen=True, kw_only=True)
class CompletionResponse:
    """Result of a raw-prompt completion request."""

    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    usage: Usage
    system_fingerprint: str = "local"
    object: str = "text_completion"
    adapter_generation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI `text_completion` JSON."""
        out = {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
               "system_fingerprint": self.system_fingerprint, "choices": [c.to_dict() for c in self.choices],
               "usage": self.usage.to_dict()}
        return _extras(out, adapter_generation=self.adapter_generation)


@dataclass(frozen=True, kw_only=True)
class ImageChoice:
    """One generated image: a file path in `url`, or base64 PNG in `b64_json`."""

    url: str | None = None
    b64_json: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImageGenerationResponse:
    """Result of `Runner.generate_image`."""

    data: list[ImageChoice]
    created: int


@dataclass(frozen=True, kw_only=True)
class SpeechGenerationResponse:
    """Result of `Runner.generate_audio`: PCM samples, sampling rate and channel count."""

    pcm: list[float]
    rate: int
    channels: int


@dataclass(frozen=True, kw_only=True)
class CalibrationStatus:
    """Online imatrix calibration state (`Runner.begin/calibration_status/apply_calibration`)."""

    collecting: bool
    layers: int
    layers_tracking: int
    total_rows: int
    min_rows: int
    max_rows: int
