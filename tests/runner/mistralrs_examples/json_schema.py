# mistral.rs examples/python/json_schema.py: a JSON-schema grammar, num_device_layers=["500"].
import json

from agentkit import Architecture, ChatCompletionRequest, Runner, Which  # noqa: F401 (imported there too)

runner = Runner(which=Which.Plain(model_id="microsoft/Phi-3.5-mini-instruct"), num_device_layers=["500"])

address_schema = {
    "type": "object",
    "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "state": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "zip": {"type": "integer", "minimum": 10000, "maximum": 99999},
    },
    "required": ["street", "city", "state", "zip"],
    "additionalProperties": False,
}
response = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": "Give me a sample address."}],
        max_tokens=256,
        temperature=0.1,
        grammar_type="json_schema",
        grammar=json.dumps(address_schema),
    )
)
print(response.choices[0].message.content)
print(response.usage)
