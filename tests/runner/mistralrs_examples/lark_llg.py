# mistral.rs examples/python/lark_llg.py: Lark with an inline %json schema (llguidance syntax).
from agentkit import Architecture, ChatCompletionRequest, Runner, Which  # noqa: F401 (imported there too)

runner = Runner(which=Which.Plain(model_id="microsoft/Phi-3.5-mini-instruct"), num_device_layers=["500"])

REASONED_ANSWER = r"""
start: "Reasoning: " /.+/ "\nJSON: " answer
answer: %json {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["Yes", "No"]}},
    "required": ["answer"],
    "additionalProperties": false
}
"""

question = "If all dogs are mammals, and all mammals are animals, are dogs animals?"
response = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": question}],
        max_tokens=100,
        temperature=0.1,
        grammar_type="lark",
        grammar=REASONED_ANSWER,
    )
)
print(response.choices[0].message.content)
print(response.usage)
