"""Tool-call markers that are special tokens (Mistral `[TOOL_CALLS]`/`[ARGS]`, Llama `<|python_tag|>`)
survive decoding, so the family parser sees them (a tiny model with such a tokenizer)."""

from __future__ import annotations

import json

import pytest

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.testing import tiny_tokenizer

MISTRAL_TEMPLATE = (
    "{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{%- endif %}"
    "{%- for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{%- endfor %}"
    "{%- if add_generation_prompt %}assistant: {%- endif %}"
    "{#- replies look like [TOOL_CALLS]name[ARGS]{...} #}"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = tmp_path_factory.mktemp("tiny-mistral-markers")
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]", "[ARGS]", "[AVAILABLE_TOOLS]",
                                                         "[/AVAILABLE_TOOLS]"]})
    tok.chat_template = MISTRAL_TEMPLATE
    cfg = AutoConfig.for_model("mistral", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               max_position_embeddings=512, eos_token_id=tok.eos_token_id,
                               bos_token_id=tok.bos_token_id, sliding_window=None)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_mistral_named_call_with_special_markers_is_parsed(tiny_mistral):
    # force the reply with a grammar: [TOOL_CALLS] and [ARGS] are single special tokens here
    with Runner(Which.Plain(tiny_mistral), progress=False) as r:
        calls_id, args_id = (r.tokenize_text(t, False, None)[0] for t in ("[TOOL_CALLS]", "[ARGS]"))
        lark = f'start: <[{calls_id}]> "get_weather" <[{args_id}]> "{{\\"city\\": \\"Oslo\\"}}"'
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages="weather?", tool_schemas=[json.dumps(WEATHER)], grammar=lark, grammar_type="lark",
            max_tokens=32))
        choice = resp.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
        # without tools nothing is parsed, and special tokens are dropped from the text as usual
        plain = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages="weather?", grammar=lark, grammar_type="lark", max_tokens=32))
        assert plain.choices[0].message.content == 'get_weather{"city": "Oslo"}'
