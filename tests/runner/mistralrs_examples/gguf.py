# mistral.rs examples/python/gguf.py: Which.GGUF with a separate tokenizer repo, sampling knobs.
from agentkit import ChatCompletionRequest, Runner, Which

which = Which.GGUF(
    tok_model_id="mistralai/Mistral-7B-Instruct-v0.1",
    quantized_model_id="TheBloke/Mistral-7B-Instruct-v0.1-GGUF",
    quantized_filename="mistral-7b-instruct-v0.1.Q4_K_M.gguf",
)
runner = Runner(which=which)

request = ChatCompletionRequest(
    model="default",
    messages=[{"role": "user", "content": "Tell me a story about the Rust type system."}],
    max_tokens=256,
    presence_penalty=1.0,
    top_p=0.1,
    temperature=0.1,
)
response = runner.send_chat_completion_request(request)
print(response.choices[0].message.content)
print(response.usage)
