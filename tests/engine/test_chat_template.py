"""Chat template rendering matches transformers' apply_chat_template; resolution order; sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import datetime

import pytest

from agentkit.engine.chat_template import (
    ChatTemplate,
    TemplateError,
    TemplateSecurityError,
    resolve_chat_template,
    tools_rendered,
)
from agentkit.engine.tokenizer import load_tokenizer
from agentkit.testing import ARCHITECTURES

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city — e.g. Zürich",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    }
]


def _tool_call_conv(arguments, content):
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp_c": 21}'},
    ]


# (name, messages, tools, add_generation_prompt)
CASES = [
    ("plain", [{"role": "user", "content": "Hello! café 🙂"}], None, True),
    (
        "multi",
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "2+2?"},
        ],
        None,
        True,
    ),
    ("tools", [{"role": "user", "content": "Weather in Paris?"}], TOOLS, True),
    ("tool_call_dict", _tool_call_conv({"city": "Paris"}, ""), TOOLS, True),
    ("tool_call_str", _tool_call_conv('{"city": "Paris"}', ""), TOOLS, True),
    ("no_gen_prompt", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], None, False),
]
# The tiny ChatML template also accepts an assistant tool-call message without content.
TINY_EXTRA = [("tool_call_none_content", _tool_call_conv({"city": "Paris"}, None), TOOLS, True)]


def _assert_matches_transformers(template: ChatTemplate, hf, cases) -> None:
    for name, messages, tools, agp in cases:
        expected = hf.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=agp)
        got = template.render(messages, tools=tools, add_generation_prompt=agp)
        assert got == expected, name


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_models_render_like_transformers(tiny_models, arch):
    model_dir = tiny_models(arch)
    tok = load_tokenizer(model_dir)
    template = resolve_chat_template(
        jinja_explicit=None, chat_template=None, model_dir=model_dir, gguf_template=None,
        tokenizer_config=None, special_tokens=tok.special_tokens_map(),
    )
    assert template is not None and template.origin == "chat_template.jinja"
    assert template.eos_token == "<|im_end|>"
    _assert_matches_transformers(template, tok.hf, CASES + TINY_EXTRA)
    assert tools_rendered(template, CASES[0][1], TOOLS)
    assert "<tool_call>" in template.render(_tool_call_conv({"city": "Paris"}, ""), tools=TOOLS)


@contextlib.contextmanager
def _shared_cache():
    """Point AGENTKIT_CACHE at a per-session dir (under conftest's temp HF_HOME), then restore it."""
    old = os.environ.get("AGENTKIT_CACHE")
    os.environ["AGENTKIT_CACHE"] = os.path.join(os.environ["HF_HOME"], "agentkit-cache")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AGENTKIT_CACHE", None)
        else:
            os.environ["AGENTKIT_CACHE"] = old


@pytest.mark.slow
def test_smollm2_renders_like_transformers_and_ignores_tools(smollm2):
    directory, name = smollm2
    with _shared_cache():
        tok = load_tokenizer(None, gguf_path=os.path.join(directory, name))
    template = resolve_chat_template(
        jinja_explicit=None, chat_template=None, model_dir=None, gguf_template=tok.hf.chat_template,
        tokenizer_config=None, special_tokens=tok.special_tokens_map(),
    )
    assert template is not None and template.origin == "gguf"
    assert (template.bos_token, template.eos_token, template.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    )
    _assert_matches_transformers(template, tok.hf, CASES)
    assert not tools_rendered(template, CASES[0][1], TOOLS)


def test_template_variables_match_transformers(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    literal = (
        "{{ tools is defined }}|{{ tools is none }}|{{ enable_thinking is defined }}|"
        "{{ reasoning_effort is defined }}|{{ bos_token }}|{{ unk_token is defined }}|"
        "{% for m in messages %}{{ m | tojson }};"
        "{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments is string }}{% endif %}{% endfor %}"
        "{% generation %}[gen]{% endgeneration %}{{ {'b': 'ü', 'a': [1]} | tojson(indent=2, sort_keys=True) }}"
    )
    template = ChatTemplate(literal, bos_token=tok.bos_token, eos_token=tok.eos_token)
    messages = _tool_call_conv('{"city": "Paris"}', None) + [
        {"role": "assistant", "content": "ok", "reasoning_content": "thought"},
        {"role": "assistant", "content": "ok", "reasoning": "old name"},
    ]
    expected = tok.hf.apply_chat_template(messages, chat_template=literal, tokenize=False)
    got = template.render(messages, add_generation_prompt=False)
    assert got == expected
    assert got.startswith("True|True|False|False|<|endoftext|>|False|")
    assert '"thinking": "old name"' in got and '"reasoning_content": "old name"' in got
    kw = dict(enable_thinking=False, reasoning_effort="low")
    expected = tok.hf.apply_chat_template(messages, chat_template=literal, tokenize=False, tools=TOOLS, **kw)
    got = template.render(messages, add_generation_prompt=False, tools=TOOLS, **kw)
    assert got == expected and got.startswith("True|False|True|True|")


def test_render_extras_and_inputs_untouched():
    template = ChatTemplate(
        "{{ date_string }}|{{ builtin_tools is defined }}|{{ enable_thinking }}|{{ messages | length }}",
    )
    messages = [{"role": "user", "content": "x", "tool_calls": None}]
    snapshot = json.dumps(messages)
    out = template.render(messages, enable_thinking=True)
    date, builtin, thinking, count = out.split("|")
    assert re.fullmatch(r"\d{2}, [A-Z][a-z]+, \d{4}", date)
    assert (builtin, thinking, count) == ("False", "True", "1")
    assert template.render(messages, builtin_tools=["web_search"]).split("|")[1] == "True"
    assert template.render(messages, date_string="01, May, 2000").startswith("01, May, 2000|")
    assert json.dumps(messages) == snapshot
    assert template.compiled is template.compiled  # compiled once
    with pytest.raises(ValueError, match="non-empty list"):
        template.render([])
    with pytest.raises(TypeError, match="dict"):
        template.render(["hello"])


def test_tools_rendered_detects_templates_that_ignore_tools():
    ignores = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    shows = ChatTemplate("{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}")
    messages = [{"role": "user", "content": "hi"}]
    assert not tools_rendered(ignores, messages, TOOLS)
    assert tools_rendered(shows, messages, TOOLS)


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__.__mro__ }}", "{% set x = [] %}{{ x.append(1) }}", "{% set ns = namespace(_x=1) %}"],
)
def test_sandbox_blocks_escapes_and_mutation(source):
    with pytest.raises(TemplateSecurityError) as info:
        ChatTemplate(source).render([{"role": "user", "content": "hi"}])
    assert isinstance(info.value, ValueError)


def test_raise_exception_strftime_and_errors():
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(TemplateError, match=r"^Only user and assistant roles are supported!$"):
        ChatTemplate("{{ raise_exception('Only user and assistant roles are supported!') }}").render(messages)
    assert ChatTemplate("{{ strftime_now('%Y') }}").render(messages) == str(datetime.now().year)
    assert ChatTemplate("{% for m in messages %}{% break %}{% endfor %}ok").render(messages) == "ok"
    with pytest.raises(TemplateError, match="undefined"):
        ChatTemplate("{{ nope.attr }}", origin="gguf").render(messages)
    with pytest.raises(TemplateError, match="syntax error at line 1"):
        ChatTemplate("{% for %}").compiled  # noqa: B018


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if isinstance(text, str) else json.dumps(text))
    return str(path)


SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": None}


def _resolve(**kw):
    args = dict(jinja_explicit=None, chat_template=None, model_dir=None, gguf_template=None,
                tokenizer_config=None, special_tokens=SPECIALS)
    args.update(kw)
    return resolve_chat_template(**args)


def test_resolution_order(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    _write(model / "chat_template.jinja", "A")
    _write(model / "tokenizer_config.json", {"chat_template": "B", "eos_token": {"content": "<cfg_eos>"}})
    _write(model / "chat_template.json", {"chat_template": "C", "bos_token": "<json_bos>"})
    other = tmp_path / "other"
    other.mkdir()
    explicit = _write(other / "explicit.jinja", "E")
    _write(other / "tokenizer_config.json", {"eos_token": "<nb_eos>", "unk_token": {"content": "<nb_unk>"}})
    arg_json = _write(tmp_path / "arg.json", {"chat_template": "J", "bos_token": "<arg_bos>"})
    kw = dict(model_dir=str(model), gguf_template="G")

    t = _resolve(jinja_explicit=explicit, chat_template=arg_json, **kw)
    assert (t.source, t.origin, t.bos_token, t.eos_token, t.unk_token) == (
        "E", "jinja_explicit", "<s>", "<nb_eos>", "<nb_unk>",
    )
    t = _resolve(chat_template=arg_json, **kw)
    assert (t.source, t.origin, t.bos_token, t.eos_token) == ("J", "chat_template", "<arg_bos>", "</s>")
    t = _resolve(chat_template=explicit, **kw)
    assert (t.source, t.origin, t.eos_token) == ("E", "chat_template", "<nb_eos>")
    t = _resolve(chat_template="{{ 'L' }}", **kw)
    assert (t.origin, t.render([{"role": "user", "content": ""}])) == ("literal", "L")
    t = _resolve(**kw)
    assert (t.source, t.origin) == ("A", "chat_template.jinja")
    os.remove(model / "chat_template.jinja")
    t = _resolve(**kw)
    assert (t.source, t.origin, t.eos_token) == ("B", "tokenizer_config", "</s>")
    t = _resolve(**kw, special_tokens={})
    assert t.eos_token == "<cfg_eos>"  # tokenizer_config tokens fill in missing ones
    t = _resolve(**kw, tokenizer_config={"chat_template": [{"name": "tool_use", "template": "T"},
                                                         {"name": "default", "template": "D"}]})
    assert (t.source, t.origin) == ("D", "tokenizer_config")
    with pytest.raises(ValueError, match="default"):
        _resolve(**kw, tokenizer_config={"chat_template": [{"name": "tool_use", "template": "T"}]})
    _write(model / "tokenizer_config.json", {"eos_token": "</s>"})
    t = _resolve(**kw)
    assert (t.source, t.origin, t.bos_token) == ("C", "chat_template.json", "<json_bos>")
    os.remove(model / "chat_template.json")
    t = _resolve(**kw)
    assert (t.source, t.origin, t.bos_token) == ("G", "gguf", "<s>")
    assert _resolve(model_dir=str(model)) is None


def test_resolution_errors(tmp_path):
    missing = str(tmp_path / "nope.jinja")
    with pytest.raises(ValueError, match=re.escape(missing)):
        _resolve(jinja_explicit=missing)
    with pytest.raises(ValueError, match=re.escape(missing)):
        _resolve(chat_template=missing)
    bad_json = _write(tmp_path / "bad.json", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _resolve(chat_template=bad_json)
    no_key = _write(tmp_path / "nokey.json", {"template": "x"})
    with pytest.raises(ValueError, match="chat_template"):
        _resolve(chat_template=no_key)
    with pytest.raises(TemplateError, match="syntax error"):
        _resolve(chat_template="{% if %}")
