"""Chat-template rendering is bounded in steps, time and size (defects D5, D6) and otherwise unchanged.

Hostile templates run in a child process under a timeout and an address-space limit, so a
regression fails in seconds instead of hanging the suite or eating the machine's memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from agentkit import ChatCompletionRequest, CompletionRequest, Runner, Which
from agentkit.engine import template_sandbox
from agentkit.engine.chat_template import ChatTemplate, TemplateError
from agentkit.engine.template_sandbox import RenderLimits, TemplateResourceError, render_bounded

HOSTILE = {
    # the D5 and D6 reproducers
    "nested_range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(n=10**6) }}",
    "range_overflow": "{% for i in range(10**9) %}{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(0) }}",
    "str_repeat": "{{ 'a' * 10**12 }}",
    # other ways to grow a value or burn time
    "concat_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "plus_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "list_literal_doubling": "{% set ns = namespace(a=['x']) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a }}",
    "dict_doubling": "{% set ns = namespace(a={'k': 'x'}) %}{% for i in range(60) %}{% set ns.a = dict(p=ns.a, q=ns.a) %}{% endfor %}{{ ns.a }}",
    "shared_list_repeat": "{% set a = ['x' * 1000] * 3000 %}{% set b = [a] * 3000 %}{{ b }}",
    "int_power": "{{ 2 ** (10 ** 10) }}",
    "int_square": "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "center_filter": "{{ 'a'|center(1000000000) }}",
    "center_method": "{{ 'a'.center(10**10) }}",
    "printf_width": "{{ '%1000000000s' % 'a' }}",
    "format_width": "{{ '{:>1000000000}'.format('a') }}",
    "format_filter": "{{ '%*s'|format(1000000000, 'a') }}",
    "replace_growth": "{{ ('a' * 1000)|replace('a', 'a' * 100000) }}",
    "expandtabs": "{{ 'a\tb'.expandtabs(10**10) }}",
    "batch_fill": "{{ [1]|batch(10**9, 'x')|list|length }}",
    "indent": "{{ ('a\n' * 1000)|indent(100000) }}",
    "join_separator": "{{ (range(100000)|list)|join('x' * 1000) }}",
    "output_size": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "macro_buffer": "{% macro m() %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "macro_buffer_big_items": "{% macro m() %}{% for i in range(100000) %}{{ 'y' * 8000000 }}{% endfor %}{% endmacro %}{{ m() }}",
    "set_block": "{% set b %}{% for i in range(100000) %}{{ 'y' * 8000000 }}{% endfor %}{% endset %}",
    "filter_block": "{% filter upper %}{% for i in range(100000) %}{{ 'y' * 8000000 }}{% endfor %}{% endfilter %}",
    "tojson_indent": "{{ {'a': [1, 2]}|tojson(indent=10**9) }}",
    "message_loops": "{% for a in messages %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
}

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from agentkit.engine.chat_template import ChatTemplate, TemplateError
    out = {}
    for name, src in json.loads(sys.argv[1]).items():
        t = time.perf_counter()
        try:
            text = ChatTemplate(src).render([{"role": "user", "content": "hi"}])
            out[name] = ["rendered", len(text)]
        except BaseException as e:
            out[name] = [type(e).__name__, isinstance(e, TemplateError), str(e)[:300]]
        out[name].append(round(time.perf_counter() - t, 2))
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def hostile_results():
    """Render every HOSTILE template once, in a child under a 2 GiB address-space limit."""
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(HOSTILE)], capture_output=True, text=True,
                              timeout=90, env={**os.environ, "AGENTKIT_LOAD_PLUGINS": ""})
    except subprocess.TimeoutExpired:
        pytest.fail("hostile chat templates did not all finish within 90 s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-3000:]
    return json.loads(lines[0][len("RESULT"):])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_fails_with_template_error(hostile_results, name):
    kind, is_template_error, message, _seconds = hostile_results[name]
    assert is_template_error is True, (kind, message)
    assert "chat template from literal" in message
    if name not in ("range_overflow", "recursion"):  # caught by a bound, not by running out of memory
        assert kind == "TemplateResourceError", message


def test_resource_errors_are_template_errors(hostile_results):
    assert "RecursionError" in hostile_results["recursion"][2]
    assert "OverflowError" in hostile_results["range_overflow"][2]
    assert hostile_results["nested_range"][0] == "TemplateResourceError"
    assert "steps" in hostile_results["nested_range"][2]


def test_memory_error_becomes_template_error(monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(template_sandbox, "render_bounded", boom)
    with pytest.raises(TemplateError, match="ran out of resources: MemoryError"):
        ChatTemplate("{{ 'x' }}").render([{"role": "user", "content": "hi"}])


def test_step_and_time_limits_are_exact():
    from agentkit.engine.chat_template import template_environment

    loop = template_environment().from_string("{% for i in range(n) %}.{% endfor %}")
    assert render_bounded(loop, {"n": 500}, "t", RenderLimits(max_steps=2000)) == "." * 500
    with pytest.raises(TemplateResourceError, match="more than 2000 steps"):
        render_bounded(loop, {"n": 5000}, "t", RenderLimits(max_steps=2000))
    with pytest.raises(TemplateResourceError, match="longer than 0.0 s"):
        render_bounded(loop, {"n": 5}, "t", RenderLimits(max_seconds=0.0))
    with pytest.raises(TemplateResourceError, match="the rendered prompt would be"):
        render_bounded(loop, {"n": 50}, "t", RenderLimits(max_chars=10))


FEATURES = [
    # loops: loop variables, filters on the iterable, else branches, recursion, unpacking
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ loop.revindex0 }}"
    "{{ loop.first }}{{ loop.last }}{{ loop.previtem is defined }}{{ loop.cycle('a', 'b') }}:{{ m.content }}"
    "{% else %}none{% endfor %}",
    "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{% set x, y = 1, 2 %}{{ x + y }}",
    "{% for item in tree recursive %}[{{ item.name }}{% if item.children %}{{ loop(item.children) }}{% endif %}]{% endfor %}",
    "{% for i in range(3) %}{% for j in range(i) %}{% if j == 1 %}{% break %}{% endif %}{{ i }}{{ j }}{% endfor %}"
    "{% endfor %}",
    # macros, caller, namespace accumulation, set blocks
    "{% macro wrap(t) %}<{{ t }}|{{ caller() }}>{% endmacro %}{% call wrap('x') %}in{% endcall %}"
    "{% set ns = namespace(acc=[], s='') %}{% for m in messages %}{% set ns.acc = ns.acc + [m.role] %}"
    "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.acc|join(',') }}{{ ns.s }}{% set blk %}B{{ 1 }}{% endset %}{{ blk }}",
    # operators and filters that are bounded
    "{{ 'ab' * 3 }}{{ [1, 2] * 2 }}{{ 2 ** 10 }}{{ 7 * 6 }}{{ '%5s|%-4d|%.2f' % ('x', 3, 1.5) }}{{ '{:>6}{}'.format('r', 1) }}"
    "{{ 'a-b'|replace('-', '--') }}{{ 'x'|center(7) }}{{ 'a\nb'|indent(2, true) }}{{ [1,2,3,4,5]|batch(2, 0)|list }}"
    "{{ [1,2,3]|slice(2)|list }}{{ '%s=%d'|format('n', 4) }}{{ [[1], [2, 3]]|sum(start=[]) }}{{ [1, 2]|sum }}"
    "{{ tools|tojson }}{{ tools|tojson(indent=2) }}{{ ', '.join(['a', 'b']) }}{{ 'a\tb'.expandtabs(4) }}"
    "{{ lipsum(1, false, 5, 6)|length > 0 }}{{ (1, 2) }}{{ {'k': [1]} }}{{ dict(a=1) }}",
    "{% autoescape true %}{{ '<b>' ~ m }}{% endautoescape %}{{ '<b>' ~ 1 ~ none }}",
]


@pytest.mark.parametrize("index", range(len(FEATURES)))
def test_bounded_rendering_is_identical_to_the_plain_sandbox(index):
    """The bounds never change what a template renders (compared with jinja2's own sandbox)."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from agentkit.engine.chat_template import template_environment

    bounded = template_environment()
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    plain.filters["tojson"] = lambda x, ensure_ascii=False, indent=None: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent)
    plain.globals["dict"] = dict
    variables = {
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi <x>"},
                     {"role": "assistant", "content": "yo"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tree": [{"name": "a", "children": [{"name": "b", "children": []}]}, {"name": "c", "children": []}],
        "m": "<i>",
    }
    source = FEATURES[index]
    expected = plain.from_string(source).render(**variables)
    assert render_bounded(bounded.from_string(source), variables, "t") == expected


def test_hostile_render_does_not_starve_other_requests(tiny_llama, tmp_path):
    """A hostile template ends with a TemplateError while a completion on the same Runner completes."""
    path = tmp_path / "slow.jinja"
    path.write_text(HOSTILE["nested_range"])
    with Runner(Which.Plain(tiny_llama), jinja_explicit=str(path), progress=False) as r:
        errors: list[BaseException] = []

        def hostile() -> None:
            try:
                r.send_chat_completion_request(ChatCompletionRequest(model="default", messages="hi", max_tokens=4))
            except BaseException as e:  # noqa: BLE001 - recorded for the assertion below
                errors.append(e)

        thread = threading.Thread(target=hostile, daemon=True)
        thread.start()
        out = r.send_completion_request(CompletionRequest(prompt="The capital", model="default", max_tokens=4))
        thread.join(timeout=60)
        assert not thread.is_alive(), "the hostile render did not end"
        assert out.usage.completion_tokens > 0
        assert len(errors) == 1 and isinstance(errors[0], TemplateError) and isinstance(errors[0], ValueError)
