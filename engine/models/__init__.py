"""Native model implementations the engine runs (nano-vllm's `models/`).

Scope: `llama` (the Llama-family decoder over a flattened varlen batch).

Non-goals: loading weights (`agentkit.engine.loading`), quantized linear kinds
(`agentkit.engine.quant`), the transformers fallback runner (`agentkit.engine.model_runner`).
"""
