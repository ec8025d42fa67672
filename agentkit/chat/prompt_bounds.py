"""Bounds on prompt text before it is tokenized, and the empty-prompt check.

Scope: reliability defects D2 and D4. Tokenizing costs ~16 bytes of transient memory per input
character (and ~130 bytes at peak RSS), so a 100 MB message used to abort the process inside the
Rust tokenizer before the context-length check ran. `prompt_bound(host)` gives the longest text
that can possibly fit the model's context: ``max_seq_len × longest token``, where the longest
token is measured in the vocabulary's own spelling (one character per byte for byte-level BPE,
so never shorter than the text it decodes to). Every token covers at most that many characters
of input, so a longer text needs more than ``max_seq_len`` tokens and is rejected without being
tokenized. (Tokenizers whose normalizer deletes characters, such as BERT's control-character
cleanup, could pack more text into a token; agentkit's generative models have none.) With
``truncate_sequence`` a longer text is cut to its last `max_chars` characters instead, which keeps
more than a context's worth of tokens, then truncated by tokens as before.

Non-goals: counting tokens exactly (the tokenizer does that afterwards), bounding the chat
template's own output (`agentkit.engine.template_sandbox`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentkit.errors import PromptTooLongError, RequestError
from agentkit.models.served import PromptBound

if TYPE_CHECKING:
    from agentkit.models.served import ServedModel

__all__ = ["PromptBound", "check_message_size", "check_not_empty", "check_prompt_size", "prompt_bound"]


def prompt_bound(host: ServedModel) -> PromptBound:
    """The host's `PromptBound`, computed once from its vocabulary (~60 ms for 49k tokens) and cached."""
    if host.prompt_bound is None:
        vocab = host.tokenizer.hf.get_vocab()
        longest = max((len(t) for t in vocab), default=1)
        ctx = host.max_seq_len
        host.prompt_bound = PromptBound(ctx * max(longest, 1), ctx, max(longest, 1))
    return host.prompt_bound


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(v) for v in value)
    return 0


def check_message_size(messages: list[dict[str, Any]], host: ServedModel, truncate: bool, cap: int) -> None:
    """Reject chat messages whose text alone is too long, before the template renders them.

    The bound is `cap` (the template's output limit), and without truncation `prompt_bound` too.
    """
    size = _text_size(messages)
    bound = prompt_bound(host)
    if size > bound.max_chars and not truncate:
        raise PromptTooLongError(f"the chat messages hold {size} characters of text, more than model {host.model_id!r}"
                           f" can take: at most {bound.describe()}; shorten them or pass truncate_sequence=True")
    if size > cap:
        raise PromptTooLongError(f"the chat messages hold {size} characters of text, more than the chat template's"
                           f" output limit of {cap} characters; shorten them")


def check_prompt_size(text: str, host: ServedModel, truncate: bool, what: str) -> str:
    """`text` if it can fit the context; its tail with `truncate`; else RequestError naming the bound."""
    bound = prompt_bound(host)
    if len(text) <= bound.max_chars:
        return text
    if truncate:
        return text[-bound.max_chars:]
    raise PromptTooLongError(
        f"{what} is {len(text)} characters, more than model {host.model_id!r} can take: at most {bound.describe()},"
        " so it cannot fit even before tokenizing; shorten it or pass truncate_sequence=True"
    )


def check_not_empty(ids: list[int], what: str) -> None:
    """Reject a prompt of 0 tokens (the engine needs at least one position to run)."""
    if not ids:
        raise RequestError(f"{what} is empty (0 tokens); send at least one token of text")
