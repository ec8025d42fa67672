"""ServedModel: one model as the chat layer sees it (tokenizer, chat template, `Backend`).

Scope: the record a request path works on: the model id, its tokenizer and chat template (the
prompt is rendered and tokenized in the caller's process), the generation defaults and context,
and the `Backend` that runs the tokenized requests. Facts derived from the model once (its tool
family, whether its template renders tools, its added tokens, its `PromptBound`) are typed fields,
None until the chat layer first computes them. Torch-free.

Non-goals: loading (`agentkit.models.local.load_model` builds the local one), embedding models
(`agentkit.models.local.EmbeddingHost`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.models.backend import Backend

if TYPE_CHECKING:
    from agentkit.engine.calibration import OnlineCalibrator
    from agentkit.engine.chat_template import ChatTemplate
    from agentkit.engine.engine import Engine
    from agentkit.engine.tokenizer import Tokenizer

__all__ = ["PromptBound", "ServedModel"]


@dataclass(frozen=True)
class PromptBound:
    """The longest prompt text (in characters) that can fit `context_tokens` tokens
    (`agentkit.chat.prompt_bounds.prompt_bound` computes it)."""

    max_chars: int
    context_tokens: int
    longest_token_chars: int

    def describe(self) -> str:
        return (f"{self.max_chars} characters (context {self.context_tokens} tokens × {self.longest_token_chars}"
                " characters of its longest token)")


@dataclass(eq=False)
class ServedModel:
    """Everything needed to serve requests for one model id."""

    model_id: str
    backend: Backend
    tokenizer: Tokenizer
    template: ChatTemplate | None
    generation_config: dict[str, Any]
    max_seq_len: int
    arch: str
    load_time_s: float
    isq: OnlineCalibrator | None = None
    """Online calibration / re-ISQ of an in-situ-quantized local model, else None."""
    tool_family: str | None = field(default=None, repr=False)
    """Tool-call markup family (`agentkit.chat.tool_parsing.detect_family`); set with `renders_tools`."""
    renders_tools: bool | None = field(default=None, repr=False)
    """Whether the chat template renders a `tools=` argument (else tools are injected as a prompt)."""
    added_tokens: frozenset[str] | None = field(default=None, repr=False)
    """The tokenizer's added tokens' texts (kept out of free text in tool-call grammars)."""
    prompt_bound: PromptBound | None = field(default=None, repr=False)
    """The longest prompt text that can fit the context (`agentkit.chat.prompt_bounds`)."""

    @property
    def backend_kind(self) -> str:
        """What runs the model: the backend's `kind` ("native", "transformers", ...)."""
        return self.backend.kind

    @property
    def runner_kind(self) -> str:
        """Former name of `backend_kind`."""
        return self.backend.kind

    @property
    def engine(self) -> Engine:
        """The local `Engine` (tests and engine-level tools); AttributeError for other backends."""
        engine = getattr(self.backend, "engine", None)
        if engine is None:
            raise AttributeError(f"model {self.model_id!r} is served by a {type(self.backend).__name__}, "
                                 "which has no local engine")
        return engine

    def shutdown(self) -> None:
        self.backend.shutdown()
