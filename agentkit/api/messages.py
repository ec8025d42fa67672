"""Chat messages of a request: validation and the normalised form the chat layer reads.

Scope: `check_message` (the shape rules of runner-api.md §1.6: role, str content or a list of
text/media parts, OpenAI `tool_calls`, `tool_call_id`, `name`, `reasoning_content`) and
`normalize_message` (parts joined to text, media listed apart, tool-call ids and JSON arguments
made uniform).

Non-goals: chat templates and tokenization (`agentkit.chat`), media decoding.
"""

from __future__ import annotations

import copy
from typing import Any

from agentkit.api.checks import check_str
from agentkit.tools import decode_arguments

__all__ = ["check_message", "normalize_message"]

_MEDIA_PARTS = {"image_url": "image", "audio_url": "audio", "video_url": "video"}
_MESSAGE_EXTRAS = ("tool_calls", "tool_call_id", "name", "reasoning_content")


def _check_part(i: int, j: int, part: Any) -> str:
    """Validate one content part; returns its type ("text", "image_url", ...)."""
    where = f"messages[{i}]['content'][{j}]"
    if not isinstance(part, dict):
        raise TypeError(f"{where} must be a dict like {{'type': 'text', 'text': ...}}, got {type(part).__name__}")
    ptype = part.get("type", "text" if "text" in part else None)
    if ptype == "text":
        check_str(where, "text", part.get("text"))
        return "text"
    if ptype in _MEDIA_PARTS:
        ref = part.get(ptype)
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise ValueError(f"{where} must be {{'type': {ptype!r}, {ptype!r}: {{'url': ...}}}}, got {part!r}")
        return ptype
    raise ValueError(f"{where} has unknown type {ptype!r}; expected 'text', 'image_url', 'audio_url' or 'video_url'")


def check_message(i: int, msg: Any) -> None:
    """Validate `messages[i]` of a chat request (role, content or parts, tool calls); raise naming the fault."""
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise TypeError(f"Expected a string or list of dicts. {where} is a {type(msg).__name__}")
    if "role" not in msg:
        raise ValueError(f"{where} has no 'role' key: {msg!r}")
    check_str(where, "role", msg["role"])
    has_calls = bool(msg.get("tool_calls"))
    content = msg.get("content")
    if content is None and not has_calls:
        if "content" not in msg:
            raise ValueError(f"{where} has no 'content' key: {msg!r}")
        raise TypeError(f"{where}: `content` must be a str or a list of parts, got None")
    if isinstance(content, list):
        if not content:
            raise ValueError(f"{where}: `content` must not be an empty list")
        kinds = [_check_part(i, j, p) for j, p in enumerate(content)]
        if len(kinds) == 1 and kinds[0] != "text":
            raise ValueError(f"{where}: a content list with one part must be a text part {{'type': 'text', 'text': ...}}")
        if len(kinds) > 1 and msg["role"] != "user":
            raise ValueError(f"{where}: only 'user' messages may have several content parts, got role {msg['role']!r}")
    elif content is not None and not isinstance(content, str):
        raise TypeError(f"{where}: `content` must be a str or a list of parts, got {type(content).__name__}")
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise TypeError(f"{where}: `tool_calls` must be a list, got {type(calls).__name__}")
        for k, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"{where}['tool_calls'][{k}] must be {{'function': {{'name': ..., 'arguments': ...}}}}")
            if not isinstance(fn.get("arguments", "{}"), (str, dict)):
                raise TypeError(f"{where}['tool_calls'][{k}]['function']['arguments'] must be a JSON str or dict")
    for key in ("tool_call_id", "name", "reasoning_content"):
        check_str(where, key, msg.get(key), optional=True)


def normalize_message(msg: dict[str, Any], allow_media: bool) -> dict[str, Any]:
    """A checked message as the chat layer reads it: text content, media listed apart, JSON arguments parsed."""
    content = msg.get("content")
    out: dict[str, Any] = {"role": msg["role"]}
    media: list[dict[str, str]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif len(content) == 1:
        text = content[0]["text"]
    else:
        texts = []
        for part in content:
            ptype = part.get("type", "text")
            if ptype == "text":
                texts.append(part["text"])
            else:
                ref = part[ptype]
                media.append({"type": _MEDIA_PARTS[ptype], "url": ref["url"] if isinstance(ref, dict) else ref})
        text = " ".join(texts)
    if media and not allow_media:
        raise ValueError("multimodal input is not supported by this model yet "
                         f"(got {', '.join(m['type'] for m in media)} content); send text parts only")
    out["content"] = text
    if media:
        out["media"] = media
    for key in _MESSAGE_EXTRAS:
        if msg.get(key) is not None:
            out[key] = copy.deepcopy(msg[key])
    if "tool_calls" in out:
        out["tool_calls"] = [{**({"id": c["id"]} if c.get("id") is not None else {}), "type": "function", **c}
                             for c in out["tool_calls"]]
    for call in out.get("tool_calls", []):
        fn = call["function"]
        try:
            parsed = decode_arguments(fn.get("arguments", "{}"))
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fn["arguments"] = parsed
    return out
