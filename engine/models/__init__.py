"""Native model implementations the engine runs (nano-vllm's `models/`).

Scope: `llama` (the Llama-family decoder over a flattened varlen batch), `linear` (weights as
loaded, and the swap to serving kernels after `engine_prepare_model`), `kernels` (the dense, int8
and int4 linear layers).

Non-goals: loading weights (`agentkit.engine.loading`), the GGUF blocks and quantizers
(`agentkit.engine.quant`), the transformers fallback runner (`agentkit.engine.model_runner`).
"""
