"""MCP results and tool definitions as agentkit values (in-process models, no server)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mcp")

from mcp.types import (  # noqa: E402
    Annotations,
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)

from agentkit.api.enums import AgentPermission  # noqa: E402
from agentkit.plugins.mcp.results import is_destructive, to_tool_result, tool_permission, tool_schema  # noqa: E402


def test_images_kept_and_mentioned():
    res = CallToolResult(content=[TextContent(type="text", text="look:"),
                                  ImageContent(type="image", data="QUJD", mime_type="image/png")])
    out = to_tool_result(res, "t")
    assert out.status == "ok" and out.images_base64 == ["QUJD"]
    assert out.content == "look:\n[image 1: image/png, attached]"


def test_structured_content_kept_unless_already_in_text():
    res = CallToolResult(content=[TextContent(type="text", text="done")], structured_content={"n": 3})
    assert json.loads(to_tool_result(res, "t").content.splitlines()[-1]) == {"n": 3}
    same = CallToolResult(content=[TextContent(type="text", text='{"n": 3}')], structured_content={"n": 3})
    assert to_tool_result(same, "t").content == '{"n": 3}'
    only = CallToolResult(content=[], structured_content={"n": 3})
    assert json.loads(to_tool_result(only, "t").content) == {"n": 3}


def test_user_only_blocks_hidden_and_other_blocks_described():
    res = CallToolResult(content=[
        TextContent(type="text", text="for you", annotations=Annotations(audience=["user"])),
        TextContent(type="text", text="for the model", annotations=Annotations(audience=["assistant", "user"])),
        AudioContent(type="audio", data="AA==", mime_type="audio/wav"),
        ResourceLink(type="resource_link", name="doc", uri="file:///doc.txt"),
        EmbeddedResource(type="resource", resource=TextResourceContents(uri="mem://a", text="inline body")),
    ])
    text = to_tool_result(res, "t").content
    assert "for you" not in text and "for the model" in text
    assert "[audio: audio/wav, not shown]" in text and "file:///doc.txt" in text and "inline body" in text


def test_is_error_becomes_failed_result():
    res = CallToolResult(content=[TextContent(type="text", text="Unknown tool: nope")], is_error=True)
    out = to_tool_result(res, "nope")
    assert out.status == "failed"
    assert json.loads(out.content) == {"error": "Unknown tool: nope", "tool": "nope", "status": "failed"}


def test_annotations_map_to_permission_defaults():
    assert tool_permission(ToolAnnotations(read_only_hint=True)) is AgentPermission.Auto
    assert tool_permission(ToolAnnotations(destructive_hint=True)) is AgentPermission.Ask
    assert tool_permission(ToolAnnotations(read_only_hint=True, destructive_hint=True)) is AgentPermission.Auto
    assert tool_permission(None) is None and tool_permission(ToolAnnotations()) is None
    assert is_destructive(ToolAnnotations(destructive_hint=True))
    assert not is_destructive(ToolAnnotations()) and not is_destructive(None)


def test_schema_drops_dollar_schema_and_fills_object():
    tool = Tool(name="x", input_schema={"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"})
    assert tool_schema(tool) == {"type": "object", "properties": {}}
