"""agentkit.engine: the inference core (loading, tokenizer and chat templates, sampling, scheduling,
KV cache, model runners). Token ids in, token ids and text out; it never imports the agent layer.

Public names are imported lazily so that `import agentkit.engine` does not import torch.
"""

from __future__ import annotations

from typing import Any

from agentkit.engine.shadowed_imports import protect_dependencies

protect_dependencies()  # a user's regex.py / gguf.py / llguidance.py must not replace those packages

__all__ = ["Engine", "EngineConfig", "SamplingParams"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from agentkit.engine.engine import Engine

        return Engine
    if name == "EngineConfig":
        from agentkit.engine.config import EngineConfig

        return EngineConfig
    if name == "SamplingParams":
        from agentkit.engine.params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'agentkit.engine' has no attribute {name!r}")
