"""RunnerHandle and ModelHandle: the Runner and a loaded model as plugins see them.

Scope: two `Protocol`s naming the members a plugin may use on the objects hooks hand it
(`runner_shutdown(runner)`, `engine_draft_proposer(runner, config)`): the model list, the
default model, tokenization, context length, and a loaded model's facts (`Runner.served_model`).
`agentkit.runner.Runner` and `agentkit.models.served.ServedModel` satisfy them. The contract
(`agentkit.hookspecs`) annotates with these, so it never depends on the façade, even for types.
Torch-free; nothing is imported at run time.

Non-goals: the implementations (`agentkit.runner`, `agentkit.models.served`), request methods
(a plugin that needs them holds the `agentkit.Runner` itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentkit.engine.tokenizer import Tokenizer

__all__ = ["ModelHandle", "RunnerHandle"]


@runtime_checkable
class ModelHandle(Protocol):
    """One loaded chat model: its id, tokenizer, context length, architecture and backend kind."""

    @property
    def model_id(self) -> str: ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def max_seq_len(self) -> int: ...

    @property
    def arch(self) -> str: ...

    @property
    def backend_kind(self) -> str:
        """What runs the model ("native", "transformers", ...)."""
        ...


@runtime_checkable
class RunnerHandle(Protocol):
    """The Runner methods a plugin may call from a hook (all are public `agentkit.Runner` methods)."""

    def list_models(self) -> list[str]: ...

    def get_default_model_id(self) -> str | None: ...

    def max_sequence_length(self, model_id: str | None = None) -> int | None: ...

    def tokenize_text(self, text: str, add_special_tokens: bool, enable_thinking: bool | None,
                      model_id: str | None = None) -> list[int]: ...

    def detokenize_text(self, tokens: list[int], skip_special_tokens: bool, model_id: str | None = None) -> str: ...

    def served_model(self, model_id: str | None = None) -> ModelHandle: ...
