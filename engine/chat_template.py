"""Chat templates: find a model's Jinja chat template and render conversations with it.

Scope: `resolve_chat_template` picks the template by mistral.rs's order (explicit `.jinja` >
`chat_template` argument > `chat_template.jinja` > `tokenizer_config.json` > `chat_template.json` >
GGUF metadata), and `ChatTemplate.render` renders it in a Jinja sandbox configured like transformers
5.x `apply_chat_template` (same filters, globals, message normalisation), so prompts match
transformers' byte for byte. `tools_rendered` tells whether a template shows the tools it is given.
Rendering is bounded in time, steps and size (`agentkit.engine.template_sandbox`); every failure,
resource errors included, is a `TemplateError` (a ValueError).

Non-goals: tokenising the prompt, describing tools for templates that ignore them, parsing model
output, multimodal processor templates. Imports only jinja2 (lazily), never torch/transformers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentkit.engine import template_sandbox
from agentkit.engine.loading.hub import read_json
from agentkit.engine.template_sandbox import TemplateError
from agentkit.engine.tokenizer import special_token_text

__all__ = [
    "ChatTemplate",
    "TemplateError",
    "TemplateSecurityError",
    "resolve_chat_template",
    "template_environment",
    "tools_rendered",
]

_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class TemplateSecurityError(TemplateError):
    """The template tried something the sandbox forbids (dunder access, mutating a list, ...)."""


_ENV: Any = None


def template_environment() -> Any:
    """The shared sandboxed Jinja environment, configured as transformers 5.x configures its own."""
    global _ENV
    if _ENV is not None:
        return _ENV
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    import jinja2.utils
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` (assistant-mask markers): renders its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: Any) -> None:
        raise TemplateError(str(message))

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    class TemplateDict:
        """`dict(...)` for templates without exposing the `dict` type itself."""

        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}"
            )

    class TemplateNamespace(jinja2.utils.Namespace):
        """`namespace(...)` that rejects underscore-prefixed attribute names."""

        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                _check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            _check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    env = template_sandbox.bounded_environment(
        ImmutableSandboxedEnvironment,
        filters={"tojson": tojson},
        globals={"raise_exception": raise_exception, "strftime_now": strftime_now, "dict": TemplateDict(),
                 "namespace": TemplateNamespace},
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols],
    )
    _ENV = env
    return env


def _plain(value: Any) -> Any:
    """Deep copy of template input made of plain JSON-like types (as transformers' `_plain_template_data`)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _normalize_messages(messages: list[dict]) -> list[dict]:
    """Drop None-valued keys, copy to plain data and alias reasoning fields, as transformers does."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of dicts, got {messages!r}")
    out = []
    for message in messages:
        if not isinstance(message, dict):
            raise TypeError(f"each chat message must be a dict with 'role' and 'content', got {message!r}")
        msg = _plain({k: v for k, v in message.items() if v is not None})
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


@dataclass
class ChatTemplate:
    """A Jinja chat template plus the special tokens it sees; `origin` names the source that won."""

    source: str
    origin: str = "literal"
    bos_token: str | None = None
    eos_token: str | None = None
    unk_token: str | None = None
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def compiled(self) -> Any:
        """The compiled jinja2 Template (compiled once). Raises TemplateError on a syntax error."""
        if self._compiled is None:
            import jinja2

            try:
                self._compiled = template_environment().from_string(self.source)
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(
                    f"chat template from {self.origin} has a syntax error at line {e.lineno}: {e.message}"
                ) from e
        return self._compiled

    def render(
        self,
        messages: list[dict],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict] | None = None,
        enable_thinking: bool | None = None,
        reasoning_effort: str | None = None,
        **extra: Any,
    ) -> str:
        """Render `messages` (OpenAI-style dicts) to the prompt text, like transformers' apply_chat_template.

        `tools` is always passed (None when absent, as transformers does); `enable_thinking` and
        `reasoning_effort` only when not None; `extra` becomes further template variables (e.g.
        `builtin_tools`, `documents`, `date_string`) and overrides the defaults.
        """
        import jinja2

        if tools is not None and not all(isinstance(t, dict) for t in tools):
            raise TypeError(f"tools must be a list of JSON-schema dicts, got {tools!r}")
        variables: dict[str, Any] = {"date_string": datetime.now().strftime("%d, %B, %Y")}
        for key in _TOKEN_KEYS:
            if getattr(self, key) is not None:
                variables[key] = getattr(self, key)
        if enable_thinking is not None:
            variables["enable_thinking"] = enable_thinking
        if reasoning_effort is not None:
            variables["reasoning_effort"] = reasoning_effort
        variables.update(_plain(extra))
        variables.setdefault("documents", None)
        chat = _normalize_messages(messages)
        template = self.compiled
        variables.update(messages=chat, tools=_plain(tools), add_generation_prompt=add_generation_prompt)
        try:
            return template_sandbox.render_bounded(template, variables, self.origin)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as e:
            raise TemplateSecurityError(f"chat template from {self.origin} is unsafe: {e}") from e
        except (RecursionError, MemoryError, OverflowError) as e:  # resource errors: a TemplateError too
            raise TemplateError(f"chat template from {self.origin} ran out of resources: {type(e).__name__}: {e}") from e
        except Exception as e:  # anything else the template raised is the template's failure
            raise TemplateError(f"chat template from {self.origin} failed to render: {type(e).__name__}: {e}") from e


def tools_rendered(template: ChatTemplate, messages: list[dict], tools: list[dict]) -> bool:
    """True when rendering with `tools` gives a different prompt than without (the template shows them)."""
    with_tools = template.render(messages, tools=tools, add_generation_prompt=True)
    without = template.render(messages, tools=None, add_generation_prompt=True)
    return with_tools != without


def _from_config(config: dict, what: str) -> str | None:
    """The template string from a tokenizer_config-style `chat_template` value (string or named list)."""
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        if "default" in named:
            return named["default"]
        raise ValueError(
            f"{what} has several chat templates {sorted(map(str, named))} and none is named 'default'; "
            "pass chat_template=<path to a .jinja file> to choose one"
        )
    raise ValueError(f"{what}: 'chat_template' must be a string or a list of {{name, template}}, got {value!r}")


def _neighbour_tokens(path: str) -> dict[str, str | None]:
    """Special tokens from a tokenizer_config.json next to `path`, if there is one."""
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(path)), "tokenizer_config.json")
    if not os.path.isfile(cfg_path):
        return {}
    cfg = _read_template_json(cfg_path)
    return {k: special_token_text(cfg.get(k)) for k in _TOKEN_KEYS if special_token_text(cfg.get(k)) is not None}


def _from_file(path: str) -> tuple[str, dict[str, str | None]]:
    """(template, special tokens) from a `.json` ({"chat_template", tokens...}) or `.jinja` file."""
    if path.endswith(".json"):
        data = _read_template_json(path)
        if not isinstance(data, dict) or _from_config(data, path) is None:
            raise ValueError(f"chat template file {path!r} must be a JSON object with a 'chat_template' string")
        tokens = {k: special_token_text(data.get(k)) for k in _TOKEN_KEYS if special_token_text(data.get(k)) is not None}
        return _from_config(data, path), tokens  # type: ignore[return-value]
    with open(path, encoding="utf-8") as f:
        return f.read(), _neighbour_tokens(path)


def resolve_chat_template(
    *,
    jinja_explicit: str | None,
    chat_template: str | None,
    model_dir: str | None,
    gguf_template: str | None,
    tokenizer_config: dict | None,
    special_tokens: dict[str, str | None],
) -> ChatTemplate | None:
    """Pick the chat template by mistral.rs's resolution order; None when the model has none.

    Order: `jinja_explicit` (.jinja path) > `chat_template` (.json/.jinja path, or a literal template
    string) > `<model_dir>/chat_template.jinja` > `tokenizer_config['chat_template']` (read from
    `<model_dir>/tokenizer_config.json` when not given) > `<model_dir>/chat_template.json` >
    `gguf_template`. `origin` is one of "jinja_explicit", "chat_template", "literal",
    "chat_template.jinja", "tokenizer_config", "chat_template.json", "gguf". Special tokens come from
    `special_tokens`, overridden by a `.json` template file or a `.jinja` file's neighbouring
    tokenizer_config.json.
    """
    tokens = {k: special_tokens.get(k) for k in _TOKEN_KEYS}

    def make(source: str, origin: str, override: dict[str, str | None] | None = None) -> ChatTemplate:
        merged = {**tokens, **(override or {})}
        tmpl = ChatTemplate(source=source, origin=origin, **merged)
        tmpl.compiled  # noqa: B018 - fail early on a syntax error
        return tmpl

    if jinja_explicit is not None:
        if not os.path.isfile(jinja_explicit):
            raise ValueError(
                f"jinja_explicit chat template file {jinja_explicit!r} does not exist; "
                "pass the path of an existing .jinja file"
            )
        source, override = _from_file(jinja_explicit)
        return make(source, "jinja_explicit", override)

    if chat_template is not None:
        if os.path.isfile(chat_template):
            source, override = _from_file(chat_template)
            return make(source, "chat_template", override)
        if "{%" in chat_template or "{{" in chat_template:
            return make(chat_template, "literal")
        raise ValueError(
            f"chat_template file {chat_template!r} does not exist; pass the path of a .jinja or .json "
            "chat template file (or a literal Jinja template string)"
        )

    has_dir = model_dir is not None and os.path.isdir(model_dir)
    if has_dir:
        path = os.path.join(model_dir, "chat_template.jinja")  # type: ignore[arg-type]
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return make(f.read(), "chat_template.jinja")
        cfg_path = os.path.join(model_dir, "tokenizer_config.json")  # type: ignore[arg-type]
        if tokenizer_config is None and os.path.isfile(cfg_path):
            tokenizer_config = _read_template_json(cfg_path)
    if tokenizer_config is not None:
        source = _from_config(tokenizer_config, "tokenizer_config.json")
        if source is not None:
            fallback = {k: special_token_text(tokenizer_config.get(k)) for k in _TOKEN_KEYS if tokens[k] is None}
            return make(source, "tokenizer_config", {k: v for k, v in fallback.items() if v is not None})
    if has_dir:
        path = os.path.join(model_dir, "chat_template.json")  # type: ignore[arg-type]
        if os.path.isfile(path):
            source, override = _from_file(path)
            return make(source, "chat_template.json", override)
    if gguf_template:
        return make(gguf_template, "gguf")
    return None


def _read_template_json(path: str) -> Any:
    """A template or tokenizer_config JSON file; ValueError ("... is not valid JSON") when broken."""
    return read_json(path, error=ValueError, what="chat template file")
