"""Tests of agentkit.chat.tool_parsing: tool-call detection per family, dropping, streaming equivalence.

Reference: runner-api.md §1.7 (ToolCallResponse) and §1.9 last bullet (detection formats). The
replies are written as the models' published chat formats produce them. Fast, offline, no torch.
"""

from __future__ import annotations

import json
import random
import uuid

import pytest

from agentkit.api.enums import ToolCallType
from agentkit.api.responses import CalledFunction, ToolCallResponse
from agentkit.chat.tool_parsing import (
    FAMILIES,
    ParsedCall,
    StreamingToolParser,
    detect_family,
    parse_tool_calls,
    to_responses,
)

TOOLS = ["get_weather", "get_time"]
PARIS = '{"city": "Paris"}'

QWEN_TWO_CALLS = (
    "I'll look up the weather in both cities.\n"
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "London", "unit": "celsius"}}\n</tool_call>'
)
LLAMA_TAG = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}<|eom_id|>'
LLAMA_BARE = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
LLAMA_TYPED = '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}'
MISTRAL_LIST = '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]'
MISTRAL_NAMED = '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
SMOLLM2 = '<tool_call>[{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]</tool_call>'


def calls(out):
    return [(c.name, json.loads(c.arguments)) for c in out.calls]


# --- whole-text parsing per family ---------------------------------------------------------------

def test_qwen_hermes_two_calls_with_text_before():
    out = parse_tool_calls(QWEN_TWO_CALLS, "hermes", TOOLS)
    assert out.content == "I'll look up the weather in both cities."
    assert calls(out) == [("get_weather", {"city": "Paris"}),
                          ("get_weather", {"city": "London", "unit": "celsius"})]
    assert out.dropped == []


def test_hermes_missing_closing_tag_and_unclosed_between_calls():
    out = parse_tool_calls('<tool_call>\n{"name": "get_time", "arguments": {}}\n', "hermes", TOOLS)
    assert out.content is None and calls(out) == [("get_time", {})]
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '<tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>')
    assert calls(parse_tool_calls(text, "hermes", TOOLS)) == [("get_weather", {"city": "Paris"}),
                                                             ("get_time", {"tz": "UTC"})]


def test_text_after_hermes_call_is_content():
    out = parse_tool_calls(f'Checking.<tool_call>{{"name": "get_weather", "arguments": {PARIS}}}</tool_call>'
                           " Done.", "hermes", TOOLS)
    assert out.content == "Checking. Done." and len(out.calls) == 1


def test_smollm2_list_with_stringified_arguments():
    out = parse_tool_calls(SMOLLM2, "hermes", TOOLS)
    assert out.content is None
    assert out.calls == [ParsedCall(name="get_weather", arguments=PARIS)]


def test_llama31_python_tag_and_bare_json():
    for text in (LLAMA_TAG, LLAMA_BARE, LLAMA_TYPED, "  \n" + LLAMA_BARE + "\n"):
        out = parse_tool_calls(text, "llama3", TOOLS)
        assert out.content is None, text
        assert out.calls == [ParsedCall(name="get_weather", arguments=PARIS)], text


def test_llama_python_tag_keeps_text_before_and_several_calls():
    text = ('Sure.<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
            '{"name": "get_time", "parameters": {"tz": "CET"}}')
    out = parse_tool_calls(text, "llama3", TOOLS)
    assert out.content == "Sure."
    assert calls(out) == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


def test_mistral_list_and_named_forms():
    for text in (MISTRAL_LIST, MISTRAL_NAMED, MISTRAL_LIST + "</s>"):
        out = parse_tool_calls(text, "mistral", TOOLS)
        assert out.content is None, text
        assert out.calls == [ParsedCall(name="get_weather", arguments=PARIS)], text
    two = ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
           '{"name": "get_time", "arguments": {"tz": "UTC"}}]')
    assert [c.name for c in parse_tool_calls(two, "mistral", TOOLS).calls] == ["get_weather", "get_time"]
    named = MISTRAL_NAMED + '[TOOL_CALLS]get_time[CALL_ID]a1B2c3D4e[ARGS]{"tz": "UTC"}'
    assert calls(parse_tool_calls(named, "mistral", TOOLS)) == [("get_weather", {"city": "Paris"}),
                                                               ("get_time", {"tz": "UTC"})]


def test_bare_json_list_openai_wrapper_and_fence_in_every_family():
    wrapped = '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}'
    listed = '[{"function": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]'
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    for family in FAMILIES:
        for text in (wrapped, listed, fenced):
            out = parse_tool_calls(text, family, TOOLS)
            assert out.content is None and out.calls == [ParsedCall("get_weather", PARIS)], (family, text)


def test_arguments_are_canonical_json():
    out = parse_tool_calls('<tool_call>{"name":"get_weather","arguments":{"city":"Zürich","days":3}}</tool_call>',
                           "hermes", TOOLS)
    assert out.calls[0].arguments == json.dumps({"city": "Zürich", "days": 3}, ensure_ascii=False)
    assert parse_tool_calls('<tool_call>{"name": "get_time"}</tool_call>', "hermes").calls[0].arguments == "{}"


# --- malformed, unknown, not-a-call --------------------------------------------------------------

@pytest.mark.parametrize("text,family", [
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"</tool_call>', "hermes"),
    ('<tool_call>{"name": "get_weather", "arguments": "{city: Paris}"}</tool_call>', "hermes"),
    ('<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>', "hermes"),
    ('<tool_call>{"city": "Paris"}</tool_call>', "hermes"),
    ('<|python_tag|>{"name": "get_weather", "parameters": {"city": ', "llama3"),
    ('<|python_tag|>brave_search.call(query="weather Paris")', "llama3"),
    ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}]', "mistral"),
    ('[TOOL_CALLS]get_weather[ARGS]{"city": Paris}', "mistral"),
    ('{"name": "get_weather", "arguments": {"city": "Paris"}', "generic"),
])
def test_malformed_json_stays_content(text, family):
    out = parse_tool_calls(text, family, TOOLS)
    assert out.calls == [] and out.dropped == []
    assert out.content == text.strip()


def test_unknown_tool_names_dropped():
    text = ('<tool_call>{"name": "launch_rockets", "arguments": {"n": 3}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    out = parse_tool_calls(text, "hermes", TOOLS)
    assert [c.name for c in out.calls] == ["get_weather"] and out.dropped == ["launch_rockets"]
    assert out.content is None
    out = parse_tool_calls(MISTRAL_NAMED, "mistral", ["other"])
    assert out.calls == [] and out.dropped == ["get_weather"] and out.content is None
    # without tool_names every well-formed call is kept
    assert len(parse_tool_calls(text, "hermes", None).calls) == 2


def test_bare_json_needs_a_known_name_and_the_whole_reply():
    unknown = '{"name": "lookup", "arguments": {"q": "x"}}'
    out = parse_tool_calls(unknown, "generic", TOOLS)
    assert out.calls == [] and out.dropped == [] and out.content == unknown
    assert len(parse_tool_calls(unknown, "generic", None).calls) == 1
    mixed = '[{"name": "lookup", "arguments": {}}, {"name": "get_time", "arguments": {}}]'
    out = parse_tool_calls(mixed, "generic", TOOLS)
    assert [c.name for c in out.calls] == ["get_time"] and out.dropped == ["lookup"]
    trailing = LLAMA_BARE + " Let me know if you need more."
    assert parse_tool_calls(trailing, "llama3", TOOLS).calls == []


@pytest.mark.parametrize("text", [
    'Use a dict like {"name": "get_weather", "arguments": {"city": "Paris"}} in your code.',
    "def f():\n    return {'a': 1}\n",
    '{"name": "Bob", "age": 42}',
    '{"name": "get_weather", "arguments": {"city": "Paris"}, "note": "extra key"}',
    "```python\nd = {\"name\": \"get_weather\", \"arguments\": {}}\n```",
    "[link](https://example.com) and {braces}",
    "{}", "[]", "{ not json }",
])
def test_prose_and_code_with_braces_not_parsed(text):
    for family in FAMILIES:
        out = parse_tool_calls(text, family, TOOLS)
        assert out.calls == [] and out.content == text.strip(), family


def test_plain_reply_and_empty_reply():
    assert parse_tool_calls("  Hello there!\n", "hermes", TOOLS).content == "Hello there!"
    out = parse_tool_calls("   ", "mistral", TOOLS)
    assert out.content is None and out.calls == []


def test_family_markup_only_in_its_family():
    # the Hermes tag is plain text for a Mistral model
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert parse_tool_calls(text, "mistral", TOOLS).calls == []


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown tool-call family 'qwen'"):
        parse_tool_calls("x", "qwen", None)
    with pytest.raises(TypeError, match="wrap it in a list"):
        parse_tool_calls("x", "hermes", "get_weather")
    with pytest.raises(TypeError):
        parse_tool_calls(None, "hermes", None)  # type: ignore[arg-type]
    parser = StreamingToolParser("hermes")
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.push("x")


# --- streaming ------------------------------------------------------------------------------------

STREAM_CASES = [
    (QWEN_TWO_CALLS, "hermes"), (SMOLLM2, "hermes"), (LLAMA_TAG, "llama3"), (LLAMA_BARE, "llama3"),
    (LLAMA_TYPED, "llama3"), (MISTRAL_LIST, "mistral"), (MISTRAL_NAMED, "mistral"),
    ('Sure.<|python_tag|>{"name": "get_time", "parameters": {}}; {"name": "x", "parameters": {}}', "llama3"),
    (MISTRAL_NAMED + '[TOOL_CALLS]get_time[ARGS]{"tz": "UTC"} trailing', "mistral"),
    ('A <tool_call>{"name": "nope", "arguments": {}}</tool_call> B <tool_call>{"name": "get_time"}', "hermes"),
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"</tool_call> then <tool_', "hermes"),
    ("```json\n" + LLAMA_BARE + "\n```", "generic"), ("```json\n" + LLAMA_BARE + "\n``` extra", "generic"),
    ("```python\nprint({'a': 1})\n```", "hermes"), ('{"a": 1} is a dict', "generic"),
    (LLAMA_BARE + " and more <|python_tag|>" + LLAMA_BARE, "llama3"),
    ('[TOOL_CALLS] is the marker, see [docs](x) <tool_call>', "mistral"),
    ("Plain prose, no calls at all. <tool> [TOOL] <|python", "hermes"),
    ("  \n  " + MISTRAL_LIST, "mistral"), ('[{"name": "get_time", "arguments": {}}]', "mistral"),
]


def stream(text, family, sizes, names=TOOLS):
    parser = StreamingToolParser(family, names)
    emitted, i = [], 0
    for size in sizes:
        emitted.append(parser.push(text[i:i + size]))
        i += size
    assert i >= len(text)
    final = parser.finish()
    return "".join(emitted) + (final.content or ""), final


@pytest.mark.parametrize("text,family", STREAM_CASES)
def test_streaming_equals_whole_text(text, family):
    whole = parse_tool_calls(text, family, TOOLS)
    rng = random.Random(1234)
    chunkings = [[1] * len(text), [len(text)]] + [
        [rng.randint(1, 7) for _ in range(len(text))] for _ in range(20)]
    for sizes in chunkings:
        content, final = stream(text, family, sizes)
        assert final.calls == whole.calls, sizes
        assert final.dropped == whole.dropped, sizes
        assert (content.strip() or None) == whole.content, sizes


def test_streaming_holds_back_partial_markers_only():
    parser = StreamingToolParser("hermes", TOOLS)
    assert parser.push("Let me check. <tool_") == "Let me check. "
    assert parser.push('call>{"name": "get_weather", ') == ""
    assert parser.push('"arguments": {"city": "Paris"}}</tool_call>') == ""
    assert parser.push(" Anything else?") == " Anything else?"
    final = parser.finish()
    assert final.content is None and final.calls == [ParsedCall("get_weather", PARIS)]

    parser = StreamingToolParser("mistral", TOOLS)
    assert parser.push("Done [TOOL") == "Done "
    assert parser.push("S] here") == "[TOOLS] here"

    parser = StreamingToolParser("llama3", TOOLS)
    assert parser.push("{") == ""  # may be a bare JSON call
    assert parser.push('"name": "get_weather", "parameters": {"city": "Paris"}}') == ""
    assert parser.push(" -- or not") == LLAMA_BARE + " -- or not"
    assert parser.finish().calls == []

    parser = StreamingToolParser("generic", TOOLS)
    assert parser.push("[") == ""
    assert parser.push("link](x)") == "[link](x)"
    parser = StreamingToolParser("generic", TOOLS)
    assert parser.push("{") == "" and parser.push(" x") == "{ x"


# --- detect_family and responses -----------------------------------------------------------------

QWEN_TEMPLATE = ('{%- if tools %}{{- "# Tools\\n\\nYou may call one or more functions ..." }}'
                 '{{- "<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}'
                 '\\n</tool_call><|im_end|>\\n" }}{%- endif %}')
LLAMA31_TEMPLATE = ('{%- if builtin_tools is defined or tool_definition %}{{- "<|python_tag|>" }}{%- endif %}'
                    '{%- if builtin_tools is defined %}{{- "<|eom_id|>" }}{%- else %}{{- "<|eot_id|>" }}{%- endif %}')
LLAMA32_TEMPLATE = '{{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}{{- "<|eom_id|>" }}'
MISTRAL_TEMPLATE = ('{%- elif message.tool_calls is defined %}{{- "[TOOL_CALLS][" }}'
                    '{%- for tool_call in message.tool_calls %}{{- tool_call | tojson }}{%- endfor %}')
CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


@pytest.mark.parametrize("template,model_type,family", [
    (QWEN_TEMPLATE, "qwen2", "hermes"), (QWEN_TEMPLATE, "llama", "hermes"),
    (LLAMA31_TEMPLATE, "llama", "llama3"), (LLAMA32_TEMPLATE, None, "llama3"),
    (MISTRAL_TEMPLATE, "mistral", "mistral"), (MISTRAL_TEMPLATE, None, "mistral"),
    (CHATML, "qwen3", "hermes"), (CHATML, "smollm3", "hermes"), (None, "Mixtral", "mistral"),
    (None, "llama", "llama3"), (CHATML, "phi3", "generic"), (None, None, "generic"), ("", "gemma", "generic"),
])
def test_detect_family(template, model_type, family):
    assert detect_family(template, model_type) == family


def test_detect_family_rejects_non_strings():
    with pytest.raises(TypeError, match="chat_template"):
        detect_family(["not", "a", "template"])  # type: ignore[arg-type]


def test_to_responses_ids_unique_and_arguments_json():
    out = parse_tool_calls(QWEN_TWO_CALLS, "hermes", TOOLS)
    responses = to_responses(out.calls * 3)
    assert [r.index for r in responses] == list(range(6))
    ids = [r.id for r in responses]
    assert len(set(ids)) == 6
    for r in responses:
        assert isinstance(r, ToolCallResponse) and r.tp is ToolCallType.Function and r.type == "function"
        assert r.id.startswith("call-") and uuid.UUID(r.id[5:]).version == 4
        assert isinstance(r.function, CalledFunction) and r.function.name == "get_weather"
        assert isinstance(json.loads(r.function.arguments), dict)
    assert to_responses([]) == []


def test_decode_arguments_is_the_one_json_string_reader():
    from agentkit.tools import decode_arguments

    assert decode_arguments('{"city": "Paris"}') == {"city": "Paris"}
    assert decode_arguments("  ") == {}
    args = {"already": "decoded"}
    assert decode_arguments(args) is args
    assert decode_arguments(None) is None
    with pytest.raises(ValueError):
        decode_arguments("{not json")
