"""Tool plans, prompt rewriting and tool-call grammars (agentkit.chat.tool_prompt), checked with llguidance."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from agentkit.chat.tool_parsing import parse_tool_calls
from agentkit.chat.tool_prompt import (
    STRICT_STRING_PATTERN,
    ToolPlan,
    plan_tools,
    prompt_messages,
    tool_grammar,
)
from agentkit.engine.chat_template import ChatTemplate
from agentkit.testing import CHATML_TOOLS_TEMPLATE

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}, "strict": True}}
CALC = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate arithmetic",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}

PLAIN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _host(source: str, arch: str = "llama") -> SimpleNamespace:
    return SimpleNamespace(template=ChatTemplate(source=source, origin="test"), arch=arch, tool_family=None, renders_tools=None)


def test_plan_follows_template_and_choice():
    plan = plan_tools(_host(CHATML_TOOLS_TEMPLATE), [WEATHER], "auto")
    assert plan.family == "hermes" and not plan.inject and plan.names == ["get_weather"]
    plan = plan_tools(_host(PLAIN_TEMPLATE), [WEATHER], "auto")
    assert plan.inject and plan.family == "hermes"  # the template ignores tools: agentkit describes them
    assert plan_tools(_host(PLAIN_TEMPLATE), [WEATHER], "none") is None
    assert plan_tools(_host(PLAIN_TEMPLATE), [], "auto") is None


@pytest.mark.parametrize("choice, match", [
    ({"type": "function", "function": {"name": "nope"}}, "not among the request's tools"),
    ("sometimes", "tool_choice must be"),
])
def test_plan_rejects_bad_choice(choice, match):
    with pytest.raises(ValueError, match=match):
        plan_tools(_host(PLAIN_TEMPLATE), [WEATHER], choice)


def test_required_without_tools_is_an_error():
    with pytest.raises(ValueError, match="needs tools"):
        plan_tools(_host(PLAIN_TEMPLATE), [], "required")


def test_injected_prompt_lists_tools_and_rewrites_history():
    plan = plan_tools(_host(PLAIN_TEMPLATE), [WEATHER, CALC], "auto")
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call-1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "call-1", "name": "get_weather", "content": "rainy"},
    ]
    out = prompt_messages(history, plan)
    assert history[2]["tool_calls"]  # inputs untouched
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert '"name": "calculator"' in out[0]["content"] and "<tool_call>" in out[0]["content"]
    assert out[2] == {"role": "assistant",
                      "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'}
    # results are words the small model answers from, after the question they serve (read last)
    assert out[3] == {"role": "user", "content": "Weather in Oslo?\n\nHere is what get_weather returned: rainy"}
    # what the model is shown is what the parser reads back
    assert parse_tool_calls(out[2]["content"], "hermes", ["get_weather"]).calls[0].name == "get_weather"
    native = plan_tools(_host(CHATML_TOOLS_TEMPLATE), [WEATHER], "auto")
    assert prompt_messages(history, native) is history


def test_results_of_several_calls_make_one_readable_turn():
    plan = plan_tools(_host(PLAIN_TEMPLATE), [WEATHER, CALC], "auto")
    history = [{"role": "user", "content": "Oslo and 2+2?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "a", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                   {"id": "b", "function": {"name": "calculator", "arguments": {"expression": "2+2"}}}]},
               {"role": "tool", "tool_call_id": "a", "name": "get_weather",
                "content": '{"city": "Oslo", "temperature_c": 7}'},
               {"role": "tool", "tool_call_id": "b", "name": "calculator", "content": '{"nested": {"x": 1}}'}]
    out = prompt_messages(history, plan)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[3]["content"] == ('Oslo and 2+2?\n\n'
                                 'Here is what get_weather returned: city: Oslo, temperature_c: 7\n'
                                 'Here is what calculator returned: {"nested": {"x": 1}}')
    assert "<tool_response>" not in out[3]["content"]
    # the answer-only round withdraws the injected tool list and the call turns; the results stay
    final = prompt_messages(history, plan_tools(_host(PLAIN_TEMPLATE), [WEATHER, CALC], "auto", answer_only=True))
    assert [m["role"] for m in final] == ["user", "user"] and final[1] == out[3]


def test_auto_without_strict_tools_only_bans_result_markup():
    plan = ToolPlan(tools=[CALC], choice="auto", family="hermes", inject=True)
    lark = tool_grammar(plan, set())
    assert _matches(lark, "It is 4.")
    assert _matches(lark, '<tool_call>\n{"name": "calculator", "arguments": {"x": [1]}}\n</tool_call>', True)
    assert not _matches(lark, "<tool_response>\n4\n</tool_response>")
    assert not _matches(lark, "The result: 4 </tool_response>")
    assert not _matches(lark, '<tool_call id="get_weather">\n{"name": "calculator", "arguments": {}}', True)
    assert not _matches(lark, "It is <tool_call", True)  # a marker may not be cut off by the end of the reply
    # Llama 3 / Mistral markers are special tokens, which free text cannot produce: no grammar
    assert tool_grammar(ToolPlan(tools=[CALC], choice="auto", family="llama3", inject=False), set()) is None


@pytest.mark.parametrize("family", ["hermes", "generic", "llama3"])
def test_answer_only_grammar_wants_words(family):
    plan = ToolPlan(tools=[WEATHER, CALC], choice="auto", family=family, inject=False, answer_only=True)
    lark = tool_grammar(plan, set())
    assert _matches(lark, "It is 7 degrees and rainy in Oslo.")
    assert not _matches(lark, '{"name": "get_weather", "arguments": {"city": "Oslo"}}')
    assert not _matches(lark, '  [{"name": "get_weather"}]')
    assert not _matches(lark, "42")  # no word
    if family == "hermes":
        assert not _matches(lark, 'Sure <tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>', True)
        assert not _matches(lark, "<tool_response>\nrainy\n</tool_response>")


def test_answer_only_plan_replies_are_not_parsed_for_calls():
    plan = plan_tools(_host(PLAIN_TEMPLATE), [WEATHER], "required", answer_only=True)
    assert plan.answer_only and plan.choice == "auto"


def _ids(tok, text: str, split_markers: bool) -> list[int]:
    """Token ids of `text`; with `split_markers`, tool markers are spelled with ordinary tokens
    (as in tokenizers such as SmolLM2's, which have no `<tool_call>` token)."""
    if not split_markers:
        return tok.encode(text)
    ids: list[int] = []
    for piece in text.replace("<tool_call>", "<tool\0_call>").replace("</tool_call>", "</tool\0_call>").split("\0"):
        ids += tok.encode(piece)
    return ids


def _matches(lark: str, text: str, split_markers: bool = False) -> bool:
    pytest.importorskip("llguidance")
    import llguidance
    import llguidance.hf

    from agentkit.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    ll = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok))
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    assert llguidance.LLMatcher.validate_grammar(grammar, ll) == ""
    matcher = llguidance.LLMatcher(ll, grammar)
    for t in _ids(tok, text, split_markers):
        if not matcher.consume_token(t):
            return False
    return matcher.is_accepting()


ADDED = {"<tool_call>", "</tool_call>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"}


def test_required_grammar_forces_one_schema_valid_call():
    plan = ToolPlan(tools=[WEATHER, CALC], choice="required", family="hermes", inject=False)
    lark = tool_grammar(plan, ADDED)
    assert _matches(lark, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert _matches(lark, '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>')
    assert not _matches(lark, 'Sure: <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert not _matches(lark, '<tool_call>\n{"name": "get_weather", "arguments": {"town": "Oslo"}}\n</tool_call>')
    assert not _matches(lark, '<tool_call>\n{"name": "other", "arguments": {}}\n</tool_call>')


def test_named_choice_grammar_allows_only_that_function():
    plan = ToolPlan(tools=[WEATHER, CALC], choice={"type": "function", "function": {"name": "calculator"}},
                    family="hermes", inject=False)
    lark = tool_grammar(plan, ADDED)
    assert _matches(lark, '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1"}}\n</tool_call>')
    assert not _matches(lark, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "x"}}\n</tool_call>')


@pytest.mark.parametrize("added", [ADDED, set()], ids=["marker-token", "marker-text"])
def test_auto_strict_grammar_is_lazy(added):
    plan = ToolPlan(tools=[WEATHER, CALC], choice="auto", family="hermes", inject=False)
    lark = tool_grammar(plan, added)
    split = not added
    assert _matches(lark, "No tool needed, it is 4.", split)
    assert _matches(lark, 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
                          '</tool_call>', split)
    # strict arguments are enforced once the call starts; non-strict tools take any object
    assert not _matches(lark, 'x<tool_call>\n{"name": "get_weather", "arguments": {"city": 3}}\n</tool_call>', split)
    assert _matches(lark, '<tool_call>\n{"name": "calculator", "arguments": {"anything": [1, 2]}}\n</tool_call>',
                    split)


def test_strict_strings_stop_at_the_closing_quote():
    plan = ToolPlan(tools=[WEATHER], choice="required", family="hermes", inject=False)
    lark = tool_grammar(plan, ADDED)
    call = '<tool_call>\n{{"name": "get_weather", "arguments": {{"city": {}}}}}\n</tool_call>'
    assert _matches(lark, call.format('"New York"'))
    assert not _matches(lark, call.format('"}}  # 1000 - 387 = 613"'))  # the run-on seen from SmolLM2
    assert not _matches(lark, call.format('"Oslo\\" and more"'))  # no escapes: the first quote closes
    assert not _matches(lark, call.format('""'))  # at least one character
    assert not _matches(lark, call.format('".23 * 19"'))  # nor a separator first
    # nor DEL, anywhere (SmolLM2 wrote a lone U+007F as a calculator expression); the tiny test
    # tokenizer cannot spell it, so the pattern itself is checked
    assert [bool(re.fullmatch(STRICT_STRING_PATTERN, v)) for v in ("7 % 2", "\x7f", "7\x7f2")] == [True, False, False]
    assert not _matches(lark, call.format('"' + "x" * 129 + '"'))  # and at most 128
    own = {"type": "function", "function": {**WEATHER["function"], "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "pattern": "^[{}a-z]*$"}}, "required": ["city"]}}}
    lark = tool_grammar(ToolPlan(tools=[own], choice="required", family="hermes", inject=False), ADDED)
    assert _matches(lark, call.format('"{x}"'))  # a schema's own pattern is kept


def test_generic_family_required_is_bare_json():
    plan = ToolPlan(tools=[WEATHER], choice="required", family="generic", inject=False)
    lark = tool_grammar(plan, ADDED)
    text = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    assert _matches(lark, text)
    assert json.loads(text)["name"] == "get_weather"
