# mistral.rs examples/python/llguidance.py: named sub-grammars (Lark + a JSON schema referenced as @myobj).
import json

from agentkit import Architecture, ChatCompletionRequest, Runner, Which  # noqa: F401 (imported there too)

runner = Runner(which=Which.Plain(model_id="microsoft/Phi-3.5-mini-instruct"), num_device_layers=["500"])

schema = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["Yes", "No"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
grammars = [
    {"lark_grammar": 'start: "Reasoning: " /.+/ "\\nJSON: " @myobj\n'},
    {"name": "myobj", "json_schema": schema},
]

question = "If all dogs are mammals, and all mammals are animals, are dogs animals?"
response = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": question}],
        max_tokens=30,
        temperature=0.1,
        grammar_type="llguidance",
        grammar=json.dumps({"grammars": grammars}),
    )
)
print(response.choices[0].message.content)
print(response.usage)
