# mistral.rs examples/python/regex.py: a regex grammar, num_device_layers=["500"].
from agentkit import Architecture, ChatCompletionRequest, Runner, Which  # noqa: F401 (imported there too)

runner = Runner(which=Which.Plain(model_id="microsoft/Phi-3.5-mini-instruct"), num_device_layers=["500"])

response = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": "Tell me a short joke."}],
        max_tokens=30,
        temperature=0.1,
        grammar_type="regex",
        grammar=r"[0-9A-Z ]+",
    )
)
print(response.choices[0].message.content)
print(response.usage)
