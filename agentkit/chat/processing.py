"""From requests to engine requests, and from engine events to response objects.

`prepare_*` renders and tokenizes a request in the caller's thread (so bad input fails fast, in
the caller, before the engine sees it); `collect_*` and `stream_chat` turn the engine's
`RequestOutput` events into the public response types.

Tools: `prepare_chat` offers tools per `agentkit.chat.tool_prompt.plan_tools` (and constrains the
reply with its grammar); `collect_chat` / `ChatStream` then parse tool calls out of the reply with
the model's family parser, dropping calls to unknown names.

Not covered: the agent loop (`agentkit.agent.loop`, built on top of these).
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.api.requests import ChatCompletionRequest, CompletionRequest
from agentkit.api.responses import (
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    CompletionChoice,
    CompletionResponse,
    Delta,
    Logprobs,
    ResponseLogprob,
    ResponseMessage,
    SpeculativeUsage,
    TopLogprob,
    Usage,
)
from agentkit.chat.prompt_bounds import check_message_size, check_not_empty, check_prompt_size
from agentkit.chat.streams import ClosingStream
from agentkit.chat.tool_parsing import StreamingToolParser, parse_tool_calls, to_responses
from agentkit.chat.tool_prompt import ToolPlan, plan_tools, prompt_messages, tool_grammar
from agentkit.chat.tool_selection import choose_required_tool
from agentkit.engine.params import SampleResult, SamplingParams
from agentkit.engine.sequence import EngineRequest, RequestOutput
from agentkit.engine.template_sandbox import DEFAULT_LIMITS
from agentkit.errors import EngineError, PromptTooLongError, RequestError, RequestTimeoutError

if TYPE_CHECKING:
    from agentkit.models.served import ServedModel

_ids = itertools.count(1)


def sampling_params(req: ChatCompletionRequest | CompletionRequest, host: ServedModel, *, logprobs: bool) -> SamplingParams:
    """The request's sampling fields, unset ones filled from generation_config.json."""
    bias = req.logit_bias
    if bias:
        bad = [t for t in bias if not 0 <= int(t) < host.tokenizer.vocab_size]
        if bad:
            raise ValueError(f"logit_bias token ids {bad} are outside the vocabulary (0..{host.tokenizer.vocab_size - 1})")
    params = SamplingParams(
        temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, min_p=req.min_p,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty, dry_multiplier=req.dry_multiplier, dry_base=req.dry_base,
        dry_allowed_length=req.dry_allowed_length, dry_sequence_breakers=req.dry_sequence_breakers,
        logit_bias={int(k): float(v) for k, v in bias.items()} if bias else None, max_tokens=req.max_tokens,
        stop_seqs=list(req.stop_seqs or []), ignore_eos=req.ignore_eos, logprobs=logprobs,
        top_logprobs=getattr(req, "top_logprobs", None), seed=getattr(req, "seed", None),
    )
    return params.with_defaults(host.generation_config)


def fit_prompt(ids: list[int], host: ServedModel, truncate: bool, max_tokens: int | None) -> list[int]:
    """Apply the context limit: error, or drop tokens from the start when `truncate_sequence`."""
    ctx = host.max_seq_len
    if len(ids) < ctx:
        return ids
    if not truncate:
        raise PromptTooLongError(
            f"Prompt sequence length is greater than {ctx}, perhaps consider using `truncate_sequence`?"
        )
    room = min(max_tokens, ctx - 1) if max_tokens else 1
    return ids[len(ids) - (ctx - room):]


def _added_tokens(host: ServedModel) -> frozenset[str]:
    if host.added_tokens is None:
        decoder = getattr(host.tokenizer.hf, "added_tokens_decoder", {}) or {}
        host.added_tokens = frozenset(str(getattr(t, "content", t)) for t in decoder.values())
    return host.added_tokens


def _compile(host: ServedModel, grammar_type: str, grammar: Any) -> Any:
    from agentkit.engine.grammar import compile_grammar

    return compile_grammar(host.tokenizer, grammar_type, grammar)


def prepare_chat(req: ChatCompletionRequest, host: ServedModel, *, messages: list[dict[str, Any]] | None = None,
                 tools: list[dict[str, Any]] | None = None,
                 tool_choice: str | dict[str, Any] | None = None,
                 answer_only: bool = False) -> tuple[EngineRequest, ToolPlan | None]:
    """Validate, render the chat template, tokenize and build the engine request.

    `messages`, `tools` (OpenAI tool dicts) and `tool_choice` override the request's own (the
    agent loop passes its growing history and the registered tools; `answer_only` asks for a reply
    in words, see `ToolPlan`). Returns the engine request
    and the tool plan the reply must be parsed with (None when no tools are offered).
    """
    user_grammar = req.validate_grammar()
    if host.template is None:
        raise RequestError(
            f"model {host.model_id!r} has no chat template; pass chat_template= or jinja_explicit= to Runner"
        )
    messages = req.normalized_messages() if messages is None else messages
    check_message_size(messages, host, req.truncate_sequence, DEFAULT_LIMITS.max_chars)
    tools = req.parsed_tools() if tools is None else tools
    plan = plan_tools(host, tools, req.normalized_tool_choice() if tool_choice is None else tool_choice, answer_only)
    rendered = prompt_messages(messages, plan)
    prompt = host.template.render(rendered, add_generation_prompt=True,
                                  tools=plan.tools if plan is not None and not plan.inject else None,
                                  enable_thinking=req.enable_thinking, reasoning_effort=req.reasoning_effort)
    prompt = check_prompt_size(prompt, host, req.truncate_sequence, "the rendered chat prompt")
    ids = host.tokenizer.encode(prompt, add_special_tokens=False)
    check_not_empty(ids, "the chat prompt rendered by the chat template")
    ids = fit_prompt(ids, host, req.truncate_sequence, req.max_tokens)
    params = sampling_params(req, host, logprobs=req.logprobs)
    grammar = None
    if user_grammar is not None:
        grammar = _compile(host, *user_grammar)
    elif plan is not None:
        plan = choose_required_tool(host, ids, plan, greedy=params.is_greedy, n_choices=req.n_choices)
        lark = tool_grammar(plan, _added_tokens(host))
        if lark is not None:
            grammar = _compile(host, "lark", lark)
    keep = plan is not None and plan.family in ("llama3", "mistral")
    return EngineRequest(str(next(_ids)), ids, params, n=req.n_choices, grammar=grammar,
                         keep_special_tokens=keep, timeout_s=req.timeout_secs), plan


def prepare_completion(req: CompletionRequest, host: ServedModel) -> EngineRequest:
    """Tokenize a raw prompt; `best_of` picks the top sequences of `n_choices` by logprob."""
    user_grammar = req.validate_grammar()
    prompt = check_prompt_size(req.prompt, host, req.truncate_sequence, "the completion prompt")
    ids = host.tokenizer.encode(prompt, add_special_tokens=True)
    check_not_empty(ids, "the completion prompt")
    ids = fit_prompt(ids, host, req.truncate_sequence, req.max_tokens)
    params = sampling_params(req, host, logprobs=False)
    grammar = _compile(host, *user_grammar) if user_grammar is not None else None
    return EngineRequest(str(next(_ids)), ids, params, n=max(req.n_choices, req.best_of or 1), grammar=grammar,
                         timeout_s=req.timeout_secs)


@dataclass
class _ChoiceAcc:
    text: str = ""
    samples: list[SampleResult] = field(default_factory=list)
    finish_reason: str | None = None
    stop_sequence: str | None = None
    started: bool = False

    def add(self, text: str, trim_start: bool) -> str:
        if trim_start and not self.started:
            text = text.lstrip()
            if not text:
                return ""
        self.started = True
        self.text += text
        return text


def _error(out: RequestOutput) -> ValueError:
    return RequestTimeoutError(out.error) if out.timed_out else EngineError(out.error)


def _events(req: EngineRequest) -> Iterator[RequestOutput]:
    while True:
        out = req.outputs.get()
        if out.error is not None:
            raise _error(out)
        yield out
        if out.finished:
            return


def _usage(out: RequestOutput) -> Usage:
    spec = None
    if out.verify_steps:
        spec = SpeculativeUsage(drafted_tokens=out.drafted_tokens, accepted_tokens=out.accepted_tokens,
                                verify_steps=out.verify_steps)
    return Usage.from_counts(out.prompt_tokens, out.completion_tokens, out.prompt_time_s, out.completion_time_s,
                             cached_tokens=out.cached_tokens or None, speculative=spec)


def _logprobs(host: ServedModel, samples: list[SampleResult]) -> list[ResponseLogprob]:
    tok = host.tokenizer
    content = []
    for s in samples:
        text = tok.decode([s.token], skip_special_tokens=False)
        tops = [TopLogprob(token=t, logprob=lp, bytes=tok.decode([t], skip_special_tokens=False))
                for t, lp in (s.top_logprobs or [])]
        content.append(ResponseLogprob(token=text, logprob=s.logprob, bytes=list(text.encode("utf-8")),
                                       top_logprobs=tops))
    return content


def _message(text: str, finish_reason: str, plan: ToolPlan | None) -> tuple[ResponseMessage, str]:
    """The reply message (tool calls parsed out under `plan`) and its finish reason."""
    if plan is None or plan.answer_only:
        return ResponseMessage(content=text, role="assistant", tool_calls=None, reasoning_content=None), finish_reason
    parsed = parse_tool_calls(text, plan.family, plan.names)
    if not parsed.calls:
        return ResponseMessage(content=text, role="assistant", tool_calls=None, reasoning_content=None), finish_reason
    return (ResponseMessage(content=parsed.content, role="assistant", tool_calls=to_responses(parsed.calls),
                            reasoning_content=None), "tool_calls")


def _accumulate(req: EngineRequest, host: ServedModel, trim_start: bool) -> tuple[list[_ChoiceAcc], Any]:
    """Read a request's outputs to the end: one accumulator per choice, and the last output (usage)."""
    accs = [_ChoiceAcc() for _ in range(req.n)]
    last = None
    try:
        for last in _events(req):
            for d in last.deltas:
                a = accs[d.index]
                a.add(d.text, trim_start=trim_start)
                a.samples.extend(d.samples)
                a.finish_reason = d.finish_reason or a.finish_reason
                a.stop_sequence = d.stop_sequence or a.stop_sequence
    finally:
        host.backend.cancel(req)  # no-op once finished; stops the engine if the caller was interrupted
    return accs, last


def collect_chat(req: EngineRequest, host: ServedModel, want_logprobs: bool,
                 plan: ToolPlan | None = None) -> ChatCompletionResponse:
    """Wait for a chat request to finish and assemble the response (tool calls parsed under `plan`)."""
    accs, last = _accumulate(req, host, trim_start=True)
    choices = []
    for i, a in enumerate(accs):
        message, reason = _message(a.text, a.finish_reason or "canceled", plan)
        choices.append(Choice(finish_reason=reason, index=i, message=message,
                              logprobs=Logprobs(content=_logprobs(host, a.samples)) if want_logprobs else None,
                              stop_sequence=a.stop_sequence))
    return ChatCompletionResponse(id=req.request_id, choices=choices, created=int(time.time()), model=host.model_id,
                                  usage=_usage(last))


class ChatStream(ClosingStream):
    """Iterator of `ChatCompletionChunkResponse`; closing it (or dropping it) cancels the request."""

    def __init__(self, req: EngineRequest, host: ServedModel, want_logprobs: bool, plan: ToolPlan | None = None) -> None:
        self._req, self._host, self._want_logprobs = req, host, want_logprobs
        self._accs = [_ChoiceAcc() for _ in range(req.n)]
        self._parsers = ([StreamingToolParser(plan.family, plan.names) for _ in range(req.n)]
                         if plan is not None and not plan.answer_only else None)
        self._done = False
        self._created = int(time.time())

    def __iter__(self) -> ChatStream:
        return self

    @property
    def finished(self) -> bool:
        """True once the final chunk was returned, the request failed, or the stream was closed."""
        return self._done

    def __next__(self) -> ChatCompletionChunkResponse:
        if self._done:
            raise StopIteration
        while True:
            try:
                out = self._req.outputs.get(timeout=0.1)
            except queue.Empty:
                continue
            if out.error is not None:
                self._done = True
                raise _error(out)
            choices = []
            for d in out.deltas:
                text = self._accs[d.index].add(d.text, trim_start=True)
                reason, calls = d.finish_reason, None
                if self._parsers is not None:
                    parser = self._parsers[d.index]
                    text = parser.push(text)
                    if reason is not None:
                        rest = parser.finish()
                        text += rest.content or ""
                        if rest.calls:
                            calls, reason = to_responses(rest.calls), "tool_calls"
                lp = None
                if self._want_logprobs and d.samples:
                    lp = _logprobs(self._host, d.samples[-1:])[0]
                if not text and reason is None and not lp:
                    continue
                choices.append(ChunkChoice(finish_reason=reason, index=d.index,
                                           delta=Delta(content=text or None, role="assistant", tool_calls=calls,
                                                       reasoning_content=None),
                                           logprobs=lp, stop_sequence=d.stop_sequence))
            if out.finished:
                self._done = True
            if choices or out.finished:
                return ChatCompletionChunkResponse(
                    id=self._req.request_id, choices=choices, created=self._created, model=self._host.model_id,
                    usage=_usage(out) if out.finished else None)

    def close(self) -> None:
        """Stop generating and free the request's cache."""
        if not self._done:
            self._done = True
            self._host.backend.cancel(self._req)


def collect_completion(req: EngineRequest, host: ServedModel, creq: CompletionRequest) -> CompletionResponse:
    """Wait for a completion request; keep the `best_of` choices with the highest total logprob."""
    accs, last = _accumulate(req, host, trim_start=False)
    order = sorted(range(len(accs)), key=lambda i: -sum(s.logprob for s in accs[i].samples))
    keep = order[: max(1, creq.best_of or 1)]
    choices = []
    for rank, i in enumerate(keep):
        text = accs[i].text
        if creq.echo_prompt:
            text = creq.prompt + text
        if creq.suffix:
            text = text + creq.suffix
        choices.append(CompletionChoice(finish_reason=accs[i].finish_reason or "canceled", index=rank, text=text,
                                        logprobs=None))
    return CompletionResponse(id=req.request_id, choices=choices, created=int(time.time()), model=host.model_id,
                              usage=_usage(last))
