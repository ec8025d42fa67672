"""agentkit: a local, hackable, plugin-based agent runtime.

The public API matches the `mistralrs` Python package: `from agentkit import Runner, Which,
ChatCompletionRequest` runs a mistral.rs script unchanged but for the import. `import agentkit` is
light: torch loads only when a `Runner` is first used (lazy attribute).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentkit.agent.history import SessionConflictError
from agentkit.api.agent_options import (
    AgentToolApproval,
    AgentToolApprovalDecision,
    AgentToolMetadata,
    ApproximateUserLocation,
    CodeExecutionConfig,
    McpClientConfigPy,
    McpServerConfigPy,
    McpServerSourcePy,
    SandboxPolicy,
    ShellConfig,
    ShellSkillMount,
    WebSearchOptions,
    WebSearchUserLocation,
)
from agentkit.api.enums import (
    AgentPermission,
    AgentToolApprovalDecisionKind,
    AgentToolKind,
    AgentToolSource,
    Architecture,
    CodeExecutionPermission,
    DiffusionArchitecture,
    EmbeddingArchitecture,
    ImageGenerationResponseFormat,
    IsqOrganization,
    ModelDType,
    MultimodalArchitecture,
    NetworkMode,
    PagedCacheType,
    SearchContextSize,
    SpeechLoaderType,
    ToolCallType,
    ToolChoice,
)
from agentkit.api.files import (
    File,
    FileSource,
    InputFile,
    RequestedFile,
)
from agentkit.api.model_options import (
    AnyMoeConfig,
    AnyMoeExpertType,
    LoraAdapterGeneration,
    LoraAdapterInfo,
    LoraResidentGenerationInfo,
    LoraRuntimeStatus,
    MultimodalAutoMapParams,
    TextAutoMapParams,
)
from agentkit.api.requests import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from agentkit.api.responses import (
    AgenticToolCallRecord,
    CalibrationStatus,
    CalledFunction,
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    CompletionChoice,
    CompletionResponse,
    Delta,
    ImageChoice,
    ImageGenerationResponse,
    Logprobs,
    PromptTokensDetails,
    ResponseLogprob,
    ResponseMessage,
    SpeechGenerationResponse,
    ToolCallResponse,
    TopLogprob,
    Usage,
)
from agentkit.api.which import (
    LoraAdapter,
    Which,
)
from agentkit.errors import (
    AgentkitError,
    CancelToolCall,
    ConfigError,
    EngineError,
    LoraAdapterError,
    ModelLoadError,
    ModelNotFoundError,
    NotSupportedError,
    PluginError,
    PromptTooLongError,
    RequestError,
    RequestTimeoutError,
    SessionError,
    ToolError,
    ToolOutputOverflowError,
)
from agentkit.hookspecs import hookimpl
from agentkit.session_directory import DirectorySessionStore
from agentkit.session_store import MemorySessionStore, SessionStore
from agentkit.sessions import Session, SessionVersionError
from agentkit.tools import Tool, ToolCall, ToolResult

if TYPE_CHECKING:
    from agentkit.runner import Runner

__version__ = "0.1.0"

__all__ = [
    # agentkit's own (beyond the mistralrs module)
    "AgentkitError",
    "DirectorySessionStore",
    "MemorySessionStore",
    "PluginError",
    "Session",
    "SessionConflictError",
    "SessionError",
    "SessionStore",
    "SessionVersionError",
    "Tool",
    "ToolCall",
    "ToolResult",
    "hookimpl",
    # the mistralrs 0.9.5 module
    "AgentPermission",
    "AgentToolApproval",
    "AgentToolApprovalDecision",
    "AgentToolApprovalDecisionKind",
    "AgentToolKind",
    "AgentToolMetadata",
    "AgentToolSource",
    "AgenticToolCallRecord",
    "AnyMoeConfig",
    "AnyMoeExpertType",
    "ApproximateUserLocation",
    "Architecture",
    "CalibrationStatus",
    "CalledFunction",
    "CancelToolCall",
    "ChatCompletionChunkResponse",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "Choice",
    "ChunkChoice",
    "CodeExecutionConfig",
    "CodeExecutionPermission",
    "CompletionChoice",
    "CompletionRequest",
    "CompletionResponse",
    "ConfigError",
    "Delta",
    "DiffusionArchitecture",
    "EmbeddingArchitecture",
    "EmbeddingRequest",
    "EngineError",
    "File",
    "FileSource",
    "ImageChoice",
    "ImageGenerationResponse",
    "ImageGenerationResponseFormat",
    "InputFile",
    "IsqOrganization",
    "Logprobs",
    "LoraAdapter",
    "LoraAdapterError",
    "LoraAdapterGeneration",
    "LoraAdapterInfo",
    "LoraResidentGenerationInfo",
    "LoraRuntimeStatus",
    "McpClientConfigPy",
    "McpServerConfigPy",
    "McpServerSourcePy",
    "ModelDType",
    "ModelLoadError",
    "ModelNotFoundError",
    "MultimodalArchitecture",
    "MultimodalAutoMapParams",
    "NetworkMode",
    "NotSupportedError",
    "PagedCacheType",
    "PromptTokensDetails",
    "RequestError",
    "PromptTooLongError",
    "ToolOutputOverflowError",
    "RequestTimeoutError",
    "RequestedFile",
    "ResponseLogprob",
    "ResponseMessage",
    "Runner",
    "SandboxPolicy",
    "SearchContextSize",
    "ShellConfig",
    "ShellSkillMount",
    "SpeechGenerationResponse",
    "SpeechLoaderType",
    "TextAutoMapParams",
    "ToolCallResponse",
    "ToolCallType",
    "ToolChoice",
    "ToolError",
    "TopLogprob",
    "Usage",
    "WebSearchOptions",
    "WebSearchUserLocation",
    "Which",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import the torch-backed `Runner` on first use."""
    if name == "Runner":
        from agentkit.runner import Runner

        return Runner
    raise AttributeError(f"module 'agentkit' has no attribute {name!r}")
