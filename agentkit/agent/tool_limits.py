"""Bounds on what one tool call may cost an agent turn: its time, and its share of the context.

Scope: `ToolLimits` (the Runner's `tool_timeout_secs` and `tool_output_max_tokens`),
`run_with_timeout` (run one tool call, give up waiting after the timeout) and `cap_tool_output`
(keep the head and tail of a result that would take too much of the model's context, with a
visible "[... N characters truncated ...]" marker between them).

A timed-out call becomes an error result the model sees ("... timed out after N seconds"), and
the turn goes on. Python cannot kill a thread: the callback keeps running in its daemon thread
until it returns by itself, and its late result is discarded. Tools that may hang should bound
their own I/O as well.

Non-goals: running tools (the agent loop and plugins), process isolation or sandboxing,
limits on the number of calls (`max_tool_rounds`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentkit.tools import ToolCall, ToolResult

__all__ = ["OUTPUT_SHARE", "ToolLimits", "cap_tool_output", "run_with_timeout"]

# Without `tool_output_max_tokens`, one result may take this share of the model's context.
OUTPUT_SHARE = 0.25
# Characters looked at per token of budget before tokenizing (a token is rarely longer than this),
# so a 5 MB result costs a cut and a small tokenization, not a 5 MB one.
_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class ToolLimits:
    """Per-call limits of the agent loop.

    `timeout_secs`: seconds a tool call may run before the model gets a timeout error result
    (None: wait as long as it takes). `output_max_tokens`: the most tokens of one result the
    model sees (None: `OUTPUT_SHARE` of the model's context); longer results keep their head
    and tail around a marker.
    """

    timeout_secs: float | None = None
    output_max_tokens: int | None = None

    def __post_init__(self) -> None:
        t = self.timeout_secs
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
            raise ValueError(f"tool_timeout_secs must be a positive number of seconds or None, got {t!r}")
        m = self.output_max_tokens
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 16):
            raise ValueError(f"tool_output_max_tokens must be an int >= 16 or None, got {m!r}")

    def output_budget(self, max_seq_len: int) -> int:
        """Tokens one result may take for a model with this context length."""
        if self.output_max_tokens is not None:
            return self.output_max_tokens
        return max(16, int(max_seq_len * OUTPUT_SHARE))


def run_with_timeout(execute: Callable[[], ToolResult | None], call: ToolCall,
                     timeout_secs: float | None) -> ToolResult | None:
    """`execute()` (one tool call), or a timeout error result once `timeout_secs` have passed.

    The call runs in a daemon thread named after the tool; on timeout it is left running (a
    Python thread cannot be stopped) and whatever it returns later is dropped.
    """
    if timeout_secs is None:
        return execute()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = execute()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"agentkit-tool-{call.name}", daemon=True)
    worker.start()
    worker.join(timeout_secs)
    if worker.is_alive():
        return ToolResult.failure(call, f"the tool call timed out after {timeout_secs:g} seconds "
                                        "(it was abandoned; try a smaller request or another tool)")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def _marker(n: int) -> str:
    return f"\n[... {n} characters truncated ...]\n"


def cap_tool_output(text: str, tokenizer: Any, max_tokens: int) -> str:
    """`text` if it fits in `max_tokens` tokens, else its head and tail (about half the budget
    each) around a "[... N characters truncated ...]" marker; N counts the characters left out.

    `tokenizer` has `encode(text, add_special_tokens=False)` and `decode(ids, skip_special_tokens=False)`.
    """
    if not isinstance(text, str):
        raise TypeError(f"a tool result must be a str, got {type(text).__name__}")
    limit_chars = max_tokens * _CHARS_PER_TOKEN
    if len(text) <= max_tokens:  # every token holds at least one character
        return text
    head_chars = tail_chars = limit_chars // 2
    window = text if len(text) <= limit_chars else text[:head_chars] + text[-tail_chars:]
    ids = tokenizer.encode(window, add_special_tokens=False)
    if len(window) == len(text) and len(ids) <= max_tokens:
        return text
    # the marker's own tokens, plus slack for merges where the pieces are joined
    room = max(2, max_tokens - len(tokenizer.encode(_marker(len(text)), add_special_tokens=False)) - 4)
    head_ids = tokenizer.encode(text[:head_chars], add_special_tokens=False)[:room // 2]
    tail_ids = tokenizer.encode(text[-tail_chars:], add_special_tokens=False)[-(room - room // 2):]
    head = tokenizer.decode(head_ids, skip_special_tokens=False)
    tail = tokenizer.decode(tail_ids, skip_special_tokens=False)
    return head + _marker(len(text) - len(head) - len(tail)) + tail
