"""The agent loop on the real SmolLM2-135M-Instruct GGUF (slow): a strict tool, called and fed back."""

from __future__ import annotations

import json

import pytest

from agentkit import ChatCompletionRequest, Runner, Which

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.mark.slow
def test_smollm2_calls_strict_tool_and_answers(smollm2):
    calls = []

    def get_weather(name, args):
        calls.append(args)
        return json.dumps({"city": args["city"], "weather": "rainy", "temperature_c": 9})

    with Runner(Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1], tok_model_id=None),
                progress=False, tool_callbacks={"get_weather": get_weather}) as r:
        chunks = list(r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "user", "content": "Is it raining in London right now?"}],
            tool_schemas=[json.dumps(WEATHER)], tool_choice="required", max_tokens=48, max_tool_rounds=2,
            temperature=0.0, stream=True)))
        assert len(calls) >= 1 and set(calls[0]) == {"city"} and calls[0]["city"].strip()
        final = chunks[-1]
        assert final.choices[0].finish_reason in ("stop", "length") and final.session_id
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert answer.strip()
        stored = json.loads(r.export_session(final.session_id))["messages"]
        assert [m["role"] for m in stored][:3] == ["user", "assistant", "tool"]
        assert json.loads(stored[2]["content"])["weather"] == "rainy"
