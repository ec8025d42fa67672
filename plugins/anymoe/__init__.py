"""AnyMoE: a dense model turned into a routed mixture of experts (mistral.rs's `AnyMoeConfig`).

Built-in plugin (`agentkit.plugin_manager.DEFAULT_PLUGINS`) serving `Runner(anymoe_config=...)`.
Modules, one concept each: `plugin` (the hooks and load-time steps), `dataset` (training rows),
`experts` (LoRA / fine-tuned expert weights), `routing` (causal per-sequence routing over the
paged varlen engine), `layer` (the gate and the MoE MLP), `gates` (gate.safetensors, hidden-state
init), `training` (AdamW on the gates, the loss CSV), `state` (statistics and evaluation).

Importing this package does not import torch (the submodules do, when a model is built).

Non-goals: see each module.
"""

from agentkit.plugins.anymoe.plugin import AnyMoePlugin

__all__ = ["AnyMoePlugin"]
