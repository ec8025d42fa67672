"""`agentkit.testing`: test utilities for agentkit and for plugin authors (this import path is
documented and stays).

Scope: re-exports the tiny-model builders (`agentkit.testing.models`) and the plugin-packaging
helpers (`agentkit.testing.packages`). Non-goals: anything used at runtime.
"""

from __future__ import annotations

from agentkit.testing.models import (
    ARCHITECTURES,
    CHATML_TOOLS_TEMPLATE,
    SPECIAL_TOKENS,
    TOOL_TOKENS,
    smollm2_gguf,
    tiny_model,
    tiny_tokenizer,
    write_tiny_gguf,
)
from agentkit.testing.packages import (
    InstalledPackage,
    install_plugin_package,
    write_dist_info,
)

__all__ = [
    "ARCHITECTURES",
    "CHATML_TOOLS_TEMPLATE",
    "InstalledPackage",
    "SPECIAL_TOKENS",
    "TOOL_TOKENS",
    "install_plugin_package",
    "smollm2_gguf",
    "tiny_model",
    "tiny_tokenizer",
    "write_dist_info",
    "write_tiny_gguf",
]
