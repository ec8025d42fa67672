"""The server-side agent loop (runner-api.md §2.1-2.3, §2.6, §2.8): generate, run tools, repeat.

Scope: `AgentLoop.tools_for` decides whether a chat request runs through the loop; `run` and
`stream` then resolve the request's session (explicit id, else message-prefix lookup, else a new
one), join the incoming messages to the stored history (`agentkit.agent.history`), and alternate model replies with
tool execution until a reply calls no tool or `max_tool_rounds` is reached. Every call of a reply
runs, in order; each result becomes a tool message with its `tool_call_id`. Permissions (Auto /
Ask / Deny, strictest wins) and approval callbacks gate every call. Usage is summed over rounds,
`agentic_tool_calls` records each executed call, the session is saved after the turn.

Differences from mistral.rs, on purpose: all calls of a reply run (not only the first), tool
messages carry `tool_call_id`, a user schema may describe a callback of the same name, callbacks
without a schema are offered with one derived from their docstring. The last round must answer
in words (`answer_only`): the reply after `max_tool_rounds` tool rounds, and, once tools ran, the
replacement of a reply that repeats a call already run this turn with the same arguments or that
is a failed call (call markup or a call object left in its text), so a turn ends with an answer,
not a call nobody runs. Tool calls are bounded by `ToolLimits` (a timeout, and a cap on
each result's share of the context); a prompt that still overflows raises
`ToolOutputOverflowError` after saving the turn so far to the session.

Non-goals: generation itself (`agentkit.chat.processing`), executing tools (plugins, through the
`agent_execute_tool` hook), storage (`agentkit.session_store`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from agentkit.agent.context import ToolContext
from agentkit.agent.history import join_history
from agentkit.agent.tool_limits import ToolLimits, cap_tool_output, run_with_timeout
from agentkit.api.agent_options import AgentToolApproval, AgentToolApprovalDecision, AgentToolMetadata
from agentkit.api.enums import AgentPermission
from agentkit.api.requests import ChatCompletionRequest
from agentkit.api.responses import (
    AgenticToolCallRecord,
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    ChunkChoice,
    Delta,
    ToolCallResponse,
    Usage,
)
from agentkit.chat.processing import ChatStream, collect_chat, prepare_chat
from agentkit.chat.tool_parsing import looks_like_call
from agentkit.engine.sequence import EngineRequest
from agentkit.errors import PromptTooLongError, ToolOutputOverflowError
from agentkit.file_store import FileStore
from agentkit.session_store import check_session_id
from agentkit.sessions import Session, merge_turn
from agentkit.tools import Tool, ToolCall, ToolResult, decode_arguments

log = logging.getLogger("agentkit.agent")

__all__ = ["DEFAULT_MAX_TOOL_ROUNDS", "AgentLoop"]

DEFAULT_MAX_TOOL_ROUNDS = 256
_STRICTNESS = {AgentPermission.Auto: 0, AgentPermission.Ask: 1, AgentPermission.Deny: 2}


@dataclass
class _Turn:
    """State of one agentic request across its rounds."""

    session: Session
    messages: list[dict[str, Any]]
    offered: list[dict[str, Any]]
    executors: dict[str, Tool]
    cap: int
    base: list[dict[str, Any]] = field(default_factory=list)  # the stored messages when the turn started
    usage: Usage | None = None
    records: list[AgenticToolCallRecord] = field(default_factory=list)
    round: int = 0
    done_calls: set[tuple[str, str]] = field(default_factory=set)  # (name, canonical arguments) run so far
    context: ToolContext | None = None

    def add_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usage = usage if self.usage is None else self.usage + usage


def _strictest(*levels: AgentPermission | None) -> AgentPermission:
    given = [p for p in levels if p is not None]
    return max(given, key=_STRICTNESS.__getitem__) if given else AgentPermission.Auto


def _signature(name: str, arguments: str) -> tuple[str, str]:
    value = _args(arguments)
    return name, json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def _denied(message: str) -> ToolResult:
    return ToolResult(json.dumps({"status": "denied", "exception": message}), status="denied")


class AgentLoop:
    """Runs agentic chat requests for one Runner.

    `tools()` returns the registered tools (name -> `Tool` with `fn`), `execute(call, session)`
    runs one call (None when no executor owns the name), `sessions` is the session store, and
    `save_plugins(session)` / `load_plugins(session)` let plugins store and restore their state.
    Engine requests go through `submit(ereq)` (the Runner's, which ties them to the model lease).
    `limits` bound each tool call (timeout, result size). `request_tools(context)` returns the
    tools plugins offer to one turn (`agent_request_tools`); `files` stores uploads and outputs;
    `config()` gives the Runner's options for the `ToolContext`.
    """

    def __init__(self, tools: Callable[[], dict[str, Tool]],
                 execute: Callable[[ToolCall, Session, Tool | None], ToolResult | None],
                 sessions: Any, save_plugins: Callable[[Session], None] | None = None,
                 load_plugins: Callable[[Session], None] | None = None, limits: ToolLimits | None = None,
                 request_tools: Callable[[ToolContext], dict[str, Tool]] | None = None,
                 files: FileStore | None = None, config: Callable[[], Any] | None = None) -> None:
        self._tools, self._execute, self.sessions = tools, execute, sessions
        self._save_plugins, self._load_plugins = save_plugins, load_plugins
        self.limits = limits or ToolLimits()
        self._request_tools, self._config = request_tools, config
        self.files = files if files is not None else FileStore()

    # ---- deciding ------------------------------------------------------------------------------
    def tools_for(self, req: ChatCompletionRequest) -> dict[str, Tool] | None:
        """The registered tools when `req` runs through the loop, else None.

        The loop runs when tools are registered, `max_tool_rounds` is set (0 disables it), a
        `session_id` is given, or the request asks for built-in tools or files (web search, code
        execution, shell, input or output files; runner-api.md §2.1). Tool sources are listed once
        here and reused for the request.
        """
        if req.max_tool_rounds == 0:
            return None
        tools = self._tools()
        if (tools or req.max_tool_rounds is not None or req.session_id is not None or req.web_search_options
                or req.enable_code_execution or req.enable_shell or req.input_files or req.files):
            return tools
        return None

    def _context(self, req: ChatCompletionRequest, session: Session, messages: list[dict[str, Any]],
                 host: Any, registered: dict[str, Tool]) -> tuple[ToolContext, dict[str, Tool]]:
        """This turn's `ToolContext` (input files stored) and the tools plugins offer to it."""
        tokenizer = host.tokenizer
        context = ToolContext(
            request=req, session=session, config=self._config() if self._config else None, files=self.files,
            turn=sum(1 for m in messages if m.get("role") == "user"), max_seq_len=host.max_seq_len,
            count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            output_tokens=self.limits.output_budget(host.max_seq_len))
        context.store_uploads(list(req.input_files or []))
        offered = self._request_tools(context) if self._request_tools is not None else {}
        for name in [n for n in offered if n in registered]:
            log.warning("request tool %r is hidden by a registered tool of the same name", name)
            del offered[name]
        return context, offered

    def _start(self, req: ChatCompletionRequest, registered: dict[str, Tool], host: Any) -> _Turn:
        incoming = req.normalized_messages()
        session = None
        if req.session_id is not None:
            check_session_id(req.session_id)
            session = self.sessions.get(req.session_id) or Session.new(req.session_id)
        else:
            session = self.sessions.find_by_prefix(incoming) or Session.new()
        messages = join_history(session.id, session.messages, incoming)  # resend, continue or conflict
        if session.messages and self._load_plugins is not None:
            self._load_plugins(session)
        context, extra = self._context(req, session, messages, host, registered)
        executors = {**registered, **extra}
        offered = req.parsed_tools()
        declared = {t["function"]["name"] for t in offered}
        offered += [t.schema() for name, t in executors.items() if name not in declared]
        cap = DEFAULT_MAX_TOOL_ROUNDS if req.max_tool_rounds is None else req.max_tool_rounds
        return _Turn(session=session, messages=messages, offered=offered, executors=executors, cap=cap,
                     base=list(session.messages), context=context)

    def _choice(self, req: ChatCompletionRequest, turn: _Turn) -> str | dict[str, Any]:
        choice = req.normalized_tool_choice()
        # a forced call in every round would never end: after the first round the model chooses
        return choice if turn.round == 0 or choice == "none" else "auto"

    def _runnable(self, calls: list[ToolCallResponse] | None, turn: _Turn) -> bool:
        return bool(calls) and turn.round < turn.cap and all(c.function.name in turn.executors for c in calls)

    def _needs_answer(self, calls: list[ToolCallResponse] | None, content: str | None, turn: _Turn,
                      answer_only: bool) -> bool:
        """True when this reply should be replaced by an answer-only round: after tools ran, it
        repeats a call already run this turn with the same arguments (its result is there), or it
        is a failed call (call markup or a call object left in the text, nothing runnable)."""
        if answer_only or not turn.records:
            return False
        if self._runnable(calls, turn):
            return any(_signature(c.function.name, c.function.arguments) in turn.done_calls for c in calls or [])
        return not calls and looks_like_call(content)

    # ---- running tools -------------------------------------------------------------------------
    def _approve(self, req: ChatCompletionRequest, turn: _Turn, tool: Tool, call: ToolCall) -> ToolResult | None:
        """None when the call may run, else the denied result the model sees instead."""
        label = tool.label or tool.name
        permission = _strictest(tool.permission, req.effective_permission())
        if permission is AgentPermission.Auto or tool.name in turn.session.approved_tools:
            return None
        if permission is AgentPermission.Deny:
            return _denied(f"{label} was denied by policy.")
        callback = req.agent_approval_callback or tool.approve
        if callback is None:
            return _denied(f"{label} requires approval, but no approval handler is configured.")
        approval = AgentToolApproval.for_call(turn.session.id, turn.round, AgentToolMetadata(tool.source, tool.kind,
                                                                                             label), call.arguments)
        try:
            decision = callback(approval)
        except Exception as exc:
            log.warning("approval callback failed for %s: %s", tool.name, exc)
            return _denied(f"Agent action was denied (the approval callback raised {type(exc).__name__}: {exc}).")
        if decision is True:
            return None
        if isinstance(decision, AgentToolApprovalDecision):
            if decision.approved:
                if decision.remember_for_session:
                    turn.session.approved_tools.add(tool.name)
                return None
            return _denied(decision.message or "Agent action was denied.")
        if decision is not False:
            log.warning("approval callback returned %r; expected bool or AgentToolApprovalDecision", decision)
        return _denied("Agent action was denied.")

    def _run_calls(self, req: ChatCompletionRequest, host: Any, turn: _Turn, content: str | None,
                   calls: list[ToolCallResponse]) -> None:
        """Run every call of a reply in order; append the assistant message and one tool message per call."""
        parsed = [ToolCall(name=c.function.name, arguments=c.function.arguments, id=c.id) for c in calls]
        turn.messages.append({"role": "assistant", "content": content or "", "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _args(c.arguments)}}
            for c in parsed]})
        budget = self.limits.output_budget(host.max_seq_len)
        context = turn.context
        for call in parsed:
            tool = turn.executors[call.name]
            turn.done_calls.add(_signature(call.name, call.arguments))
            if context is not None:
                context.round = turn.round
            result = self._approve(req, turn, tool, call)
            if result is None:
                try:
                    call.parsed_arguments()
                    result = run_with_timeout(partial(self._execute, call, turn.session, tool), call,
                                              self.limits.timeout_secs)
                except ValueError as exc:
                    result = ToolResult.failure(call, str(exc))
                if result is None:
                    result = ToolResult.failure(call, f"no executor is registered for tool {call.name!r}", "not_found")
            content_seen = cap_tool_output(result.content, host.tokenizer, budget)
            if content_seen != result.content and context is not None:
                content_seen = self._spill(context, call, result, host.tokenizer, budget)
            turn.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                  "content": content_seen})
            turn.records.append(AgenticToolCallRecord(round=turn.round, name=call.name, arguments=call.arguments,
                                                      result_content=content_seen,
                                                      result_images_base64=list(result.images_base64),
                                                      file_ids=list(result.file_ids)))
        turn.round += 1

    @staticmethod
    def _spill(context: ToolContext, call: ToolCall, result: ToolResult, tokenizer: Any, budget: int) -> str:
        """A capped result that names the file holding its full text (the note fits in `budget`)."""
        full = context.add_file(f"{call.name}_output_r{context.round}.txt", result.content, tool=call.name)
        result.file_ids.append(full.id)
        note = f"\n[The full output ({len(result.content)} characters) is in file {full.name!r} (id {full.id}).]"
        room = max(16, budget - len(tokenizer.encode(note, add_special_tokens=False)))
        return cap_tool_output(result.content, tokenizer, room) + note

    def _finish(self, turn: _Turn, final: dict[str, Any] | None) -> None:
        """Save the turn (with its final reply, or as far as it got when `final` is None)."""
        turn.session.messages = turn.messages + ([final] if final is not None else [])
        if turn.context is not None:
            known = {f.get("id") for f in turn.session.files}
            turn.session.files = turn.session.files + [f for f in turn.context.to_session() if f["id"] not in known]
        turn.session.touch()
        if self._save_plugins is not None:
            self._save_plugins(turn.session)
        # a concurrent turn on this session may have been saved meanwhile: keep both
        self.sessions.update(turn.session.id, lambda current: merge_turn(current, turn.session, turn.base))

    # ---- entry points --------------------------------------------------------------------------
    def _submit_round(self, req: ChatCompletionRequest, host: Any, turn: _Turn,
                      submit: Callable[[EngineRequest], Any] | None,
                      answer_only: bool = False) -> tuple[EngineRequest, Any]:
        """Render this round's prompt (history + offered tools) and hand it to the engine.

        The round after the last allowed tool round must answer in words (`answer_only`).
        """
        answer_only = answer_only or (turn.round >= turn.cap and req.normalized_tool_choice() != "none")
        messages = turn.context.prompt_messages(turn.messages) if turn.context is not None else turn.messages
        try:
            ereq, plan = prepare_chat(req, host, messages=messages, tools=turn.offered,
                                      tool_choice=self._choice(req, turn), answer_only=answer_only)
        except PromptTooLongError as exc:
            if not turn.records:
                raise
            self._finish(turn, None)
            biggest = max(turn.records, key=lambda r: len(r.result_content))
            raise ToolOutputOverflowError(
                f"a tool result overflowed the context: after {len(turn.records)} tool call(s) the prompt of "
                f"round {turn.round + 1} is longer than the model's {host.max_seq_len} tokens (largest result: "
                f"{len(biggest.result_content)} characters from {biggest.name!r}). Lower tool_output_max_tokens "
                f"or max_tool_rounds, or return shorter results; the turn so far is saved in session "
                f"{turn.session.id!r}") from exc
        if turn.context is not None:
            turn.context.prompt_tokens = len(ereq.prompt_ids)
        (submit or host.backend.submit)(ereq)
        return ereq, plan

    def run(self, req: ChatCompletionRequest, host: Any, tools: dict[str, Tool],
            submit: Callable[[EngineRequest], Any] | None = None) -> ChatCompletionResponse:
        """Run the loop to its final reply (non-streaming); `tools` from `tools_for(req)`."""
        turn = self._start(req, tools, host)
        answer_only = False
        while True:
            ereq, plan = self._submit_round(req, host, turn, submit, answer_only)
            resp = collect_chat(ereq, host, req.logprobs, plan)
            turn.add_usage(resp.usage)
            message = resp.choices[0].message
            if self._needs_answer(message.tool_calls, message.content, turn, answer_only):
                answer_only = True
                continue
            if not self._runnable(message.tool_calls, turn):
                self._finish(turn, _assistant(message.content, message.tool_calls))
                return replace(resp, usage=turn.usage, agentic_tool_calls=turn.records,
                               session_id=turn.session.id, files=_files(turn))
            self._run_calls(req, host, turn, message.content, message.tool_calls)

    def stream(self, req: ChatCompletionRequest, host: Any, tools: dict[str, Tool],
               submit: Callable[[EngineRequest], Any] | None = None) -> Iterator[ChatCompletionChunkResponse]:
        """Run the loop, streaming each round's text; the finish chunk comes once, for the final round."""
        turn = self._start(req, tools, host)
        answer_only = False
        while True:
            ereq, plan = self._submit_round(req, host, turn, submit, answer_only)
            stream = ChatStream(ereq, host, req.logprobs, plan)
            text, calls, final = "", None, None
            try:
                for chunk in stream:
                    held = []
                    for c in chunk.choices:
                        if c.index != 0:
                            continue
                        text += c.delta.content or ""
                        if c.delta.tool_calls:
                            calls = c.delta.tool_calls
                        if c.finish_reason is not None:
                            final = c
                        elif c.delta.content or c.logprobs:
                            held.append(c)
                    if chunk.usage is not None:
                        turn.add_usage(chunk.usage)
                    if held:
                        yield replace(chunk, choices=held, usage=None)
            finally:
                stream.close()
            if self._needs_answer(calls, text, turn, answer_only):
                answer_only = True
                continue
            if not self._runnable(calls, turn):
                self._finish(turn, _assistant(text, calls))
                last = final or ChunkChoice(finish_reason="canceled", index=0,
                                            delta=Delta(content=None), logprobs=None)
                yield ChatCompletionChunkResponse(
                    id=ereq.request_id, choices=[last],
                    created=int(time.time()), model=host.model_id, usage=turn.usage, session_id=turn.session.id,
                    files=_files(turn))
                return
            self._run_calls(req, host, turn, text or None, calls)


def _files(turn: _Turn) -> list[Any] | None:
    """The files this turn produced, as the response lists them; None when there are none."""
    files = turn.context.response_files() if turn.context is not None else []
    return files or None


def _args(arguments: str) -> Any:
    """Arguments as the JSON value chat templates expect, or the raw text when it is not strict JSON."""
    try:
        value = decode_arguments(arguments)
        json.dumps(value, allow_nan=False)  # 1e999 parses to inf, which a session file cannot hold
        return value
    except ValueError:
        return arguments


def _assistant(content: str | None, calls: list[ToolCallResponse] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if calls:
        msg["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": _args(c.function.arguments)}}
                             for c in calls]
    return msg
