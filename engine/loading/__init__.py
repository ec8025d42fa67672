"""Model loading: local/hub resolution, safetensors and GGUF reading, GGUF validation.

Scope: `hub` (token sources, offline hub-id resolution), `loader` (`LoadedModel`, `load_plain`,
`load_gguf`, `resolve_dtype`), `gguf` (GGUF metadata -> transformers config, tensors -> HF state
dict), `gguf_check` (declared sizes checked before parsing), `device_map` (layer placement,
where present).

Non-goals: building the model or the runner (`agentkit.engine.models`,
`agentkit.engine.model_runner`), tokenizers and chat templates.
"""
