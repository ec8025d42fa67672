# mistral.rs examples/python/online_calibration.py: collect activation statistics while serving,
# then requantize from the source weights with them and keep serving.
from agentkit import ChatCompletionRequest, Runner, Which

runner = Runner(which=Which.Plain(model_id="google/gemma-4-E4B-it"), in_situ_quant="Q4K")
request = ChatCompletionRequest(
    model="default",
    messages=[{"role": "user", "content": "Explain how a hash map works, briefly."}],
    max_tokens=64,
)

runner.begin_calibration()
for _ in range(8):
    runner.send_chat_completion_request(request)

status = runner.calibration_status()
print(f"Collecting on {status.layers_tracking}/{status.layers} layers, {status.total_rows} token rows seen")

runner.apply_calibration(save_cimatrix="traffic.cimatrix")

print(runner.send_chat_completion_request(request).choices[0].message.content)
