"""Exception types raised by agentkit.

Scope: the `AgentkitError` tree and `LoraAdapterError` (the wheel's dynamic-LoRA error with a
machine-readable `.code`, runner-api.md §1.3). Errors that mistral.rs reports as `ValueError`
subclass `ValueError` too, so `except ValueError` code written for mistral.rs keeps working.

Non-goals: wrapping exceptions of third-party libraries; user-input type errors, which stay
plain `TypeError`.
"""

from __future__ import annotations

__all__ = [
    "LORA_ERROR_CODES",
    "AgentkitError",
    "CancelToolCall",
    "ConfigError",
    "EngineError",
    "LoraAdapterError",
    "McpServerError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotSupportedError",
    "PluginError",
    "RequestError",
    "SessionError",
    "ToolError",
    "ToolOutputOverflowError",
]


class AgentkitError(Exception):
    """Base class of every exception agentkit raises on purpose."""


class ConfigError(AgentkitError, ValueError):
    """A `Runner`/engine/plugin configuration is invalid or inconsistent (raised at construction)."""


class ModelNotFoundError(AgentkitError, ValueError):
    """A model id, path or file (hub repo, local dir, GGUF file) could not be found or routed to."""


class ModelLoadError(AgentkitError, ValueError):
    """A model was found but could not be loaded (unsupported architecture, bad weights, OOM)."""


class NotSupportedError(AgentkitError, ValueError):
    """The requested feature is not available for this model, device or build (e.g. image input)."""


class RequestError(AgentkitError, ValueError):
    """A request was rejected when sent (bad grammar, prompt too long without truncation, ...)."""


class PromptTooLongError(RequestError):
    """The prompt cannot fit the model's context (measured in tokens, or bounded before tokenizing)."""


class ToolOutputOverflowError(PromptTooLongError):
    """An agent turn's next prompt no longer fits the context because of tool results.

    Raised instead of the generic prompt-length error once tools ran in the turn; the turn so far
    (calls and results) is saved in its session first. Lower `tool_output_max_tokens` (Runner).
    """


class RequestTimeoutError(RequestError):
    """A request passed its deadline (`timeout_secs`, or the Runner's `request_timeout_secs`)."""


class EngineError(AgentkitError, ValueError):
    """The engine failed while running a request; raised from sends and from stream `__next__`."""


class PluginError(AgentkitError):
    """A plugin failed to load or register, or broke the hook contract."""


class ToolError(AgentkitError):
    """A tool failed in a way the agent loop cannot turn into a tool result (e.g. bad registration)."""


class McpServerError(AgentkitError):
    """A required MCP server (`McpServerConfigPy(required=True)`) could not be reached when the Runner started."""


class SessionError(AgentkitError, ValueError):
    """An agentic session could not be imported, exported or found (e.g. invalid session JSON)."""


class CancelToolCall(AgentkitError):
    """Raised by a hook or approval handler to cancel a pending tool call; the loop reports it as denied."""

    def __init__(self, message: str = "Agent action was denied.") -> None:
        super().__init__(message)
        self.message = message


LORA_ERROR_CODES = frozenset(
    """
    lora_runtime_unavailable invalid_lora_name lora_alias_limit_exceeded lora_load_busy
    lora_adapter_already_loaded lora_generation_mismatch lora_adapter_not_found
    lora_generation_conflict lora_rank_limit_exceeded lora_adapter_limit_exceeded
    lora_byte_limit_exceeded lora_slot_space_exhausted invalid_lora_runtime invalid_lora_adapter
    lora_adapter_file_too_large adapter_file_not_found adapter_file_forbidden
    lora_storage_unavailable lora_device_load_failed lora_load_task_failed model_not_found
    model_state_conflict invalid_model_operation internal_error invalid_lora_load_policy
    invalid_lora_generation
    """.split()
)


class LoraAdapterError(AgentkitError, ValueError):
    """A dynamic-LoRA operation failed; `.code` is one of `LORA_ERROR_CODES` (e.g. "lora_adapter_not_found").

    Raised by `Runner.load_lora_adapter`, `unload_lora_adapter`, `list_lora_adapters` and
    `lora_adapter_status`, and when a request selects an unknown adapter.
    """

    def __init__(self, message: str, code: str = "internal_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.message, self.code))
