"""Conversions between MCP models and agentkit values: tool definitions and call results.

Scope:
- `tool_schema(mcp_tool)`: the JSON-schema parameters an agentkit `Tool` offers (`$schema`
  dropped, `type`/`properties` filled in), and `tool_permission(annotations)`: `readOnlyHint`
  -> Auto, an explicit `destructiveHint` (on a tool not read-only) -> Ask, otherwise None (the
  Runner's default, Auto, as mistralrs). `is_destructive` tells the connection not to repeat a
  call that a crash interrupted.
- `to_tool_result(result, tool)`: a `CallToolResult` as the `ToolResult` the model sees. Text
  blocks joined; blocks whose `audience` excludes the assistant are left out; images kept in
  `images_base64` (with a one-line mention in the text); audio, resource links and embedded
  resources described in one line each (embedded text resources inlined); `structuredContent`
  appended as JSON unless a text block already carries it (or the value of its one-key
  wrapper); `isError` -> a "failed"
  result in the reference's error shape.

Non-goals: capping the result to the model's context (the agent loop does it for every tool),
talking to servers.
"""

from __future__ import annotations

import json
from typing import Any

from agentkit.api.enums import AgentPermission
from agentkit.tools import ToolResult

__all__ = ["is_destructive", "to_tool_result", "tool_permission", "tool_schema"]


def tool_schema(mcp_tool: Any) -> dict[str, Any]:
    """The tool's input schema as agentkit `Tool.parameters` (an object schema; `$schema` and the top
    `title` removed)."""
    schema = dict(getattr(mcp_tool, "input_schema", None) or {})
    schema.pop("$schema", None)
    schema.pop("title", None)  # "echoArguments": small models copy it into their arguments
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema


def _hint(annotations: Any, name: str) -> bool | None:
    value = getattr(annotations, name, None) if annotations is not None else None
    return value if isinstance(value, bool) else None


def tool_permission(annotations: Any) -> AgentPermission | None:
    """Auto for `readOnlyHint=True`, Ask for an explicit `destructiveHint=True`, else None."""
    if _hint(annotations, "read_only_hint") is True:
        return AgentPermission.Auto
    if _hint(annotations, "destructive_hint") is True:
        return AgentPermission.Ask
    return None


def is_destructive(annotations: Any) -> bool:
    """True for a tool annotated `destructiveHint=True` and not read-only: never call it twice for one request."""
    return _hint(annotations, "destructive_hint") is True and _hint(annotations, "read_only_hint") is not True


def _for_model(block: Any) -> bool:
    audience = getattr(getattr(block, "annotations", None), "audience", None)
    return not audience or "assistant" in audience


def _same_json(text: str, value: Any) -> bool:
    try:
        return json.loads(text) == value
    except ValueError:
        return False


def _covered(structured: Any, parts: list[str]) -> bool:
    """True when a text block already carries `structured`, or the one value of a one-key wrapper
    (`{"result": ...}` from Python servers, `{"content": ...}` from Node ones)."""
    values = [structured]
    if isinstance(structured, dict) and len(structured) == 1:
        values.append(next(iter(structured.values())))
    return any(p == v or _same_json(p, v) for p in parts for v in values)


def _describe(block: Any, images: list[str]) -> str | None:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind == "image":
        images.append(block.data)
        return f"[image {len(images)}: {block.mime_type}, attached]"
    if kind == "audio":
        return f"[audio: {block.mime_type}, not shown]"
    if kind == "resource_link":
        title = getattr(block, "title", None) or block.name
        return f"[resource link: {title} <{block.uri}>]"
    if kind == "resource":
        res = block.resource
        text = getattr(res, "text", None)
        if isinstance(text, str):
            return f"[resource <{res.uri}>]\n{text}"
        return f"[binary resource <{res.uri}> ({getattr(res, 'mime_type', None) or 'unknown type'}), not shown]"
    return None


def to_tool_result(result: Any, tool_name: str) -> ToolResult:
    """The `ToolResult` for an MCP `CallToolResult` of tool `tool_name` (the name the model called)."""
    images: list[str] = []
    parts = [text for block in (result.content or []) if _for_model(block)
             if (text := _describe(block, images)) is not None]
    structured = getattr(result, "structured_content", None)
    if structured is not None and not _covered(structured, parts):
        parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts)
    if result.is_error:
        return ToolResult(json.dumps({"error": text or "the tool reported an error", "tool": tool_name,
                                      "status": "failed"}, ensure_ascii=False),
                          status="failed", images_base64=images)
    return ToolResult(text, images_base64=images)
