"""Tools in one chat request: what the model is offered, how, and which grammar forces the call.

Scope: `plan_tools` decides, per request and model, the tools offered (after `tool_choice`), the
tool-call family the reply is parsed with, and whether agentkit must describe the tools itself
(templates such as SmolLM2's ignore `tools=`; then a Hermes-style system prompt lists them and
earlier tool calls/results are rewritten as text the model can read). `prompt_messages` applies
that to the messages, and `tool_grammar` builds the llguidance lark grammar that constrains the
reply: arguments of `strict` tools (lazily, from the call marker on), or the whole reply when
`tool_choice` is "required" or names a function.

What keeps small models answering (issue 9): tool results are shown to models whose template
ignores tools as a plain user turn (the question the result serves, then "Here is what
get_weather returned: city: Oslo, ..."), not as `<tool_response>` markup a 135M model echoes back; text-marker
families (hermes, generic) never get to write tool-result markup (`<tool_response>`, banned by
the grammar); an `answer_only` plan (the agent loop's last round) bans tool calls too and wants
words; unconstrained strings of `strict` tools end at their closing quote (no backslash escapes,
braces or control characters, at least one character), so arguments cannot run on.

Non-goals: running tools (the agent loop), parsing replies (`agentkit.chat.tool_parsing`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentkit.chat.tool_parsing import detect_family
from agentkit.tools import decode_arguments

if TYPE_CHECKING:
    from agentkit.models.served import ServedModel

__all__ = ["RESULT_MARKERS", "STRICT_STRING_PATTERN", "ToolPlan", "plan_tools", "prompt_messages", "tool_grammar"]

TOOL_SYSTEM_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions "
    "about what values to plug into functions. Here are the available tools:\n<tools>\n{tools}\n</tools>\n"
    "For each function call, return a json object with the function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-dict>}}\n</tool_call>'
)
_PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
_PROBE_TOOLS = [{"type": "function", "function": {"name": "agentkit_probe_tool", "description": "probe",
                                                  "parameters": {"type": "object", "properties": {}}}}]
# Same separators as json.dumps and as the chat templates' examples: the likeliest text for the model.
_JSON_STYLE = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
# Text the assistant must never write while tools are on (it belongs to tool results, not replies).
# Llama 3 / Mistral result markers are special tokens, which text terminals never produce anyway.
RESULT_MARKERS = ("<tool_response>", "</tool_response>")  # and any text starting "<tool_response"
_NO_MARKUP = "~/(.|\\n)*({})(.|\\n)*/"
# An answer has a letter and is not a JSON object or list (a bare call) at its start.
_ANSWER = "/(.|\\n)*\\p{L}(.|\\n)*/ & ~/\\s*(\\{|\\[)(.|\\n)*/"
# A `strict` string without pattern/format/enum/const/maxLength is taken as a short one-line value:
# 1-128 characters, no quote, backslash (so no escapes), brace or control character (DEL too), and it does not
# start with a space, separator or closing bracket (".23 * 19", ", 45 + 55", "]["). It ends at its
# closing quote instead of running on to max_tokens; long or multi-line strings declare their shape.
STRICT_STRING_PATTERN = '^[^"\\\\{}\\x00-\\x20\\x7f.,;:)\\]][^"\\\\{}\\x00-\\x1f\\x7f]{0,127}$'
_FAMILY_MARKUP = {"hermes": ("<tool_call>", "\n", "\n", "</tool_call>"),
                  "llama3": ("<|python_tag|>", "", "", ""),
                  "mistral": ("[TOOL_CALLS]", "[", "]", ""),
                  "generic": ("", "", "", "")}


@dataclass(frozen=True)
class ToolPlan:
    """How one request offers tools: `tools` (OpenAI dicts), `choice`, `family`, `inject`.

    `answer_only`: the reply must be an answer in words: no call, no tool markup (the agent
    loop's final round). Native templates still get the tools (their history refers to them);
    injected tool descriptions and call turns are withdrawn, the results stay.
    """

    tools: list[dict[str, Any]]
    choice: str | dict[str, Any]
    family: str
    inject: bool
    answer_only: bool = False

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def forced_name(self) -> str | None:
        """The function `tool_choice` names, if any."""
        if isinstance(self.choice, dict):
            return self.choice["function"]["name"]
        return None


def _model_tool_info(host: ServedModel) -> tuple[str, bool]:
    """(family, template renders tools) for a model, computed once and cached on the host."""
    if host.tool_family is None or host.renders_tools is None:
        from agentkit.engine.chat_template import tools_rendered

        template = host.template
        try:
            rendered = template is not None and tools_rendered(template, _PROBE_MESSAGES, _PROBE_TOOLS)
        except Exception:
            rendered = False
        host.tool_family = detect_family(template.source, host.arch) if template and rendered else "hermes"
        host.renders_tools = rendered
    return host.tool_family, host.renders_tools


def plan_tools(host: Any, tools: list[dict[str, Any]], choice: str | dict[str, Any],
               answer_only: bool = False) -> ToolPlan | None:
    """The tool plan of a request, or None when no tools are offered (none given, or choice "none").

    `answer_only` makes a plan whose reply must be words (see `ToolPlan`); the choice is then "auto".

    ValueError when `tool_choice` names a function that is not among the tools, or asks for a
    tool call while no tools are given.
    """
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type", "function") == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str):
            raise ValueError(f'tool_choice must be "auto", "none", "required" or '
                             f'{{"type": "function", "function": {{"name": ...}}}}, got {choice!r}')
        if name not in [t["function"]["name"] for t in tools]:
            raise ValueError(f"tool_choice names the function {name!r}, which is not among the request's tools "
                             f"({', '.join(t['function']['name'] for t in tools) or 'none given'})")
        choice = {"type": "function", "function": {"name": name}}
    elif choice not in ("auto", "none", "required"):
        raise ValueError(f'tool_choice must be "auto", "none", "required" or a function, got {choice!r}')
    if choice == "required" and not tools:
        raise ValueError('tool_choice "required" needs tools: pass tool_schemas or register tool callbacks')
    if not tools or choice == "none":
        return None
    family, rendered = _model_tool_info(host)
    return ToolPlan(tools=tools, choice="auto" if answer_only else choice, family=family, inject=not rendered,
                    answer_only=answer_only)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    try:
        args = decode_arguments(args)
    except ValueError:
        pass
    return "<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "\n</tool_call>"


def _readable(content: str) -> str:
    """A tool result as a small model reads it best: a flat JSON object becomes `key: value, ...`."""
    try:
        value = json.loads(content)
    except ValueError:
        return content
    if isinstance(value, dict) and value and all(isinstance(v, (str, int, float, bool)) or v is None
                                                 for v in value.values()):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return content


RESULT_LINE = "Here is what {name} returned: {result}"


def _results_turn(results: list[dict[str, Any]], question: str | None) -> dict[str, Any]:
    """The question the results serve, then the results: what the model reads last is the data
    (ending on the question, SmolLM2-135M echoed it or answered from its own arithmetic)."""
    lines = [RESULT_LINE.format(name=m.get("name") or "the tool", result=_readable(str(m.get("content") or "")))
             for m in results]
    return {"role": "user", "content": "\n".join(([question, ""] if question else []) + lines)}


def prompt_messages(messages: list[dict[str, Any]], plan: ToolPlan | None) -> list[dict[str, Any]]:
    """Messages as the chat template should see them under `plan` (a new list; inputs untouched).

    Only when the template ignores tools (`plan.inject`): the tool list goes into the system
    message in the Hermes format, assistant tool calls become `<tool_call>` text, and each run of
    tool results becomes one user turn in plain words: the last user question, a blank line,
    then "Here is what <tool> returned: <result>" per result (a flat JSON object as
    `key: value, ...`). Small models echo `<tool_response>` markup back instead of answering from it.
    An `answer_only` plan shows no tool list and drops the calls (their results stay): the model
    sees a question and the data to answer it with.
    """
    if plan is None or not plan.inject:
        return messages
    out: list[dict[str, Any]] = []
    question: str | None = None
    pending: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "tool":
            pending.append(m)
            continue
        if pending:
            out.append(_results_turn(pending, question))
            pending = []
        m = copy.copy(m)
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            question = m["content"]
        if m.get("role") == "assistant" and m.get("tool_calls"):
            parts = [m["content"]] if m.get("content") else []
            parts += [] if plan.answer_only else [_call_text(c) for c in m["tool_calls"]]
            if not parts:
                continue
            m = {"role": "assistant", "content": "\n".join(parts)}
        out.append(m)
    if pending:
        out.append(_results_turn(pending, question))
    if plan.answer_only:
        return out
    prompt = TOOL_SYSTEM_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in plan.tools))
    if out and out[0].get("role") == "system":
        out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{prompt}".lstrip()}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def _strict_strings(schema: Any) -> Any:
    """`schema` with `STRICT_STRING_PATTERN` on every string without pattern/format/enum/const/maxLength."""
    if isinstance(schema, list):
        return [_strict_strings(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_strict_strings(v) if k not in ("enum", "const", "default", "examples") else v)
           for k, v in schema.items()}
    if out.get("type") == "string" and not {"pattern", "format", "enum", "const", "maxLength"} & set(out):
        out["pattern"] = STRICT_STRING_PATTERN
    return out


def _call_schema(tool: dict[str, Any], family: str) -> dict[str, Any]:
    fn = tool["function"]
    args = fn.get("parameters") if fn.get("strict") else None
    args = _strict_strings(args) if isinstance(args, dict) and args else {"type": "object"}
    key = "parameters" if family == "llama3" else "arguments"
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, key: args},
            "required": ["name", key], "additionalProperties": False}


def _lit(text: str, token_ids: AbstractSet[str]) -> str:
    """A lark terminal for `text`: the special-token form when the tokenizer has it as one token."""
    if not text:
        return ""
    if text in token_ids and text.startswith("<") and text.endswith(">"):
        return text
    return json.dumps(text)


def _prefixes(marker: str) -> str:
    """A regex for the proper, non-empty prefixes of `marker` (a reply may not end inside one)."""
    return "|".join(re.escape(marker[:i]).replace("/", "\\/") for i in range(1, len(marker)))


def _ending_rule() -> str:
    prefixes = "|".join(dict.fromkeys("|".join(_prefixes(m) for m in ("<tool_call>", "</tool_call>",
                                                                        "<tool_response>")).split("|")))
    return f"~/(.|\\n)*({prefixes})/"


def _text_rule(plan: ToolPlan) -> str:
    """The TEXT terminal: free text without tool-result markup, variants of the call markers the
    parser would not read (`<tool_call id=...>`) or a marker cut off at the end; answer-only, no
    tool markup at all and a word answer. Special-token markers need no text exclusion."""
    text = _ANSWER if plan.answer_only else "/(.|\\n)*/"
    if plan.family not in ("hermes", "generic"):
        return f"TEXT: {text}"
    banned = [r"<\/?tool_"] if plan.answer_only else [r"<\/?tool_response", r"<\/?tool_call[^>]"]
    text += f" & {_NO_MARKUP.format('|'.join(banned))} & {_ending_rule()}"
    return f"TEXT: {text}"


def tool_grammar(plan: ToolPlan, added_tokens: AbstractSet[str]) -> str | None:
    """A lark grammar for the reply under `plan`, or None when decoding stays free.

    - `answer_only`: words only (a letter somewhere, no leading JSON, no tool markup or call).
    - `tool_choice` "required" / a named function: the reply is exactly one call (to that
      function); its arguments follow the tool's schema when it is `strict`, else any JSON object.
    - "auto" with at least one `strict` tool: free text, in which each call marker starts a
      constrained call (llguidance lazy trigger); calls to non-strict tools take any object.
    - "auto" without strict tools: free text (calls are parsed afterwards).
    In free text, families with text markers (hermes, generic) cannot write `RESULT_MARKERS`;
    for Llama 3 / Mistral "auto" without strict tools decoding stays free (None).
    `added_tokens` are the tokenizer's added-token strings (markers that are single tokens).
    """
    head = ["%llguidance {}"]
    if plan.answer_only:
        return "\n".join(head + ["start: TEXT", _text_rule(plan)])
    tools = plan.tools
    forced = plan.forced_name
    if forced is not None:
        tools = [t for t in tools if t["function"]["name"] == forced]
    elif plan.choice == "auto" and not any(t["function"].get("strict") for t in tools):
        return "\n".join(head + ["start: TEXT", _text_rule(plan)]) if plan.family in ("hermes", "generic") else None
    schema = {"anyOf": [_call_schema(t, plan.family) for t in tools], "x-guidance": _JSON_STYLE}
    opener, pre, post, closer = _FAMILY_MARKUP[plan.family]
    body = " ".join(x for x in (_lit(pre, set()), f"%json {json.dumps(schema)}", _lit(post, set()),
                                _lit(closer, added_tokens)) if x)
    if plan.choice != "auto":
        return "\n".join(head + [f"start: {_lit(opener, added_tokens)} {body}".replace("start:  ", "start: ")])
    if not opener:  # generic family: a bare JSON call or free text
        return "\n".join(head + [f"start: TEXT | {body}", _text_rule(plan)])
    trigger = _lit(opener, added_tokens)
    lines = head + ["start: call* TEXT", _text_rule(plan)]
    if trigger.startswith('"'):
        lines += [f"trig[lazy]: TEXT {trigger}", f"call: trig {body}"]
    else:
        lines += [f"call: TEXT {trigger} {body}"]
    return "\n".join(lines)
