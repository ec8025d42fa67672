# mistral.rs examples/python/lark.py: a Lark grammar for JSON objects, num_device_layers=["500"].
from agentkit import Architecture, ChatCompletionRequest, Runner, Which  # noqa: F401 (imported there too)

runner = Runner(which=Which.Plain(model_id="microsoft/Phi-3.5-mini-instruct"), num_device_layers=["500"])

OBJECT_GRAMMAR = r"""
start: object

value: object | array | STRING | NUMBER | "true" | "false" | "null"
object: "{" [pair ("," pair)*] "}"
pair: STRING ":" value
array: "[" [value ("," value)*] "]"

STRING: /"(\\.|[^"\\])*"/
NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/

%import common.WS
%ignore WS
"""

response = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": "Give me a sample address."}],
        max_tokens=30,
        temperature=0.1,
        grammar_type="lark",
        grammar=OBJECT_GRAMMAR,
    )
)
print(response.choices[0].message.content)
print(response.usage)
