"""Tools in one chat request: what the model is offered, how, and which grammar forces the call.

Scope: `plan_tools` decides, per request and model, the tools offered (after `tool_choice`), the
tool-call family the reply is parsed with, and whether agentkit must describe the tools itself
(templates such as SmolLM2's ignore `tools=`; then a Hermes-style system prompt lists them and
earlier tool calls/results are rewritten as text the model can read). `prompt_messages` applies
that to the messages, and `tool_grammar` builds the llguidance lark grammar that constrains the
reply: arguments of `strict` tools (lazily, from the call marker on), or the whole reply when
`tool_choice` is "required" or names a function.

Non-goals: running tools (the agent loop), parsing replies (`agentkit.tool_parsing`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from agentkit.tool_parsing import detect_family
from agentkit.tools import decode_arguments

__all__ = ["ToolPlan", "plan_tools", "prompt_messages", "tool_grammar"]

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
_FAMILY_MARKUP = {"hermes": ("<tool_call>", "\n", "\n", "</tool_call>"),
                  "llama3": ("<|python_tag|>", "", "", ""),
                  "mistral": ("[TOOL_CALLS]", "[", "]", ""),
                  "generic": ("", "", "", "")}


@dataclass(frozen=True)
class ToolPlan:
    """How one request offers tools: `tools` (OpenAI dicts), `choice`, `family`, `inject`."""

    tools: list[dict[str, Any]]
    choice: str | dict[str, Any]
    family: str
    inject: bool

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    @property
    def forced_name(self) -> str | None:
        """The function `tool_choice` names, if any."""
        if isinstance(self.choice, dict):
            return self.choice["function"]["name"]
        return None


def _model_tool_info(host: Any) -> tuple[str, bool]:
    """(family, template renders tools) for a model, computed once and cached on the host."""
    cached = host.extra.get("tool_info")
    if cached is None:
        from agentkit.engine.chat_template import tools_rendered

        try:
            rendered = tools_rendered(host.template, _PROBE_MESSAGES, _PROBE_TOOLS)
        except Exception:
            rendered = False
        family = detect_family(host.template.source, host.arch) if rendered else "hermes"
        cached = host.extra["tool_info"] = (family, rendered)
    return cached


def plan_tools(host: Any, tools: list[dict[str, Any]], choice: str | dict[str, Any]) -> ToolPlan | None:
    """The tool plan of a request, or None when no tools are offered (none given, or choice "none").

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
    return ToolPlan(tools=tools, choice=choice, family=family, inject=not rendered)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    try:
        args = decode_arguments(args)
    except ValueError:
        pass
    return "<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + "\n</tool_call>"


def prompt_messages(messages: list[dict[str, Any]], plan: ToolPlan | None) -> list[dict[str, Any]]:
    """Messages as the chat template should see them under `plan` (a new list; inputs untouched).

    Only when the template ignores tools (`plan.inject`): the tool list goes into the system
    message in the Hermes format, assistant tool calls become `<tool_call>` text, and tool
    results become user turns wrapped in `<tool_response>` (the Qwen2.5 convention).
    """
    if plan is None or not plan.inject:
        return messages
    tools_text = "\n".join(json.dumps(t, ensure_ascii=False) for t in plan.tools)
    prompt = TOOL_SYSTEM_PROMPT.format(tools=tools_text)
    out: list[dict[str, Any]] = []
    for m in messages:
        m = copy.copy(m)
        if m.get("role") == "assistant" and m.get("tool_calls"):
            parts = [m["content"]] if m.get("content") else []
            parts += [_call_text(c) for c in m["tool_calls"]]
            m = {"role": "assistant", "content": "\n".join(parts)}
        elif m.get("role") == "tool":
            m = {"role": "user", "content": f"<tool_response>\n{m.get('content') or ''}\n</tool_response>"}
        out.append(m)
    if out and out[0].get("role") == "system":
        out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{prompt}".lstrip()}
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def _call_schema(tool: dict[str, Any], family: str) -> dict[str, Any]:
    fn = tool["function"]
    args = fn.get("parameters") if fn.get("strict") else None
    args = args if isinstance(args, dict) and args else {"type": "object"}
    key = "parameters" if family == "llama3" else "arguments"
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, key: args},
            "required": ["name", key], "additionalProperties": False}


def _lit(text: str, token_ids: set[str]) -> str:
    """A lark terminal for `text`: the special-token form when the tokenizer has it as one token."""
    if not text:
        return ""
    if text in token_ids and text.startswith("<") and text.endswith(">"):
        return text
    return json.dumps(text)


def tool_grammar(plan: ToolPlan, added_tokens: set[str]) -> str | None:
    """A lark grammar for the reply under `plan`, or None when decoding stays free.

    - `tool_choice` "required" / a named function: the reply is exactly one call (to that
      function); its arguments follow the tool's schema when it is `strict`, else any JSON object.
    - "auto" with at least one `strict` tool: free text, in which each call marker starts a
      constrained call (llguidance lazy trigger); calls to non-strict tools take any object.
    - "auto" without strict tools: None.
    `added_tokens` are the tokenizer's added-token strings (markers that are single tokens).
    """
    tools = plan.tools
    forced = plan.forced_name
    if forced is not None:
        tools = [t for t in tools if t["function"]["name"] == forced]
    elif plan.choice == "auto" and not any(t["function"].get("strict") for t in tools):
        return None
    schema = {"anyOf": [_call_schema(t, plan.family) for t in tools], "x-guidance": _JSON_STYLE}
    opener, pre, post, closer = _FAMILY_MARKUP[plan.family]
    body = " ".join(x for x in (_lit(pre, set()), f"%json {json.dumps(schema)}", _lit(post, set()),
                                _lit(closer, added_tokens)) if x)
    head = ["%llguidance {}"]
    if plan.choice != "auto":
        return "\n".join(head + [f"start: {_lit(opener, added_tokens)} {body}".replace("start:  ", "start: ")])
    if not opener:  # generic family: a bare JSON call or free text
        return "\n".join(head + [f"start: TEXT | {body}", "TEXT: /(.|\\n)*/"])
    trigger = _lit(opener, added_tokens)
    lines = head + ["start: call* TEXT", "TEXT: /(.|\\n)*/"]
    if trigger.startswith('"'):
        lines += [f"trig[lazy]: TEXT {trigger}", f"call: trig {body}"]
    else:
        lines += [f"call: TEXT {trigger} {body}"]
    return "\n".join(lines)
