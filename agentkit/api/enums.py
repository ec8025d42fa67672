"""Public enums of the mistralrs-compatible API (runner-api.md §1.5).

Scope: every enum a `mistralrs` 0.9.5 user can touch, as `enum.IntEnum` with the wheel's member
names and declaration order (`int(member)` is the declaration index, as with PyO3 `eq_int`
enums), a `repr` of the form `ToolChoice.Auto`, plus `coerce_permission` for parameters that also
accept strings ("auto"/"ask"/"deny", "none"/"loopback"/"full", "approve"/"deny").

Non-goals: the `.pyi` "wire names" (documentation only upstream) and any behaviour attached to
the members; consumers decide what an architecture or permission means.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

__all__ = [
    "AgentPermission",
    "AgentToolApprovalDecisionKind",
    "AgentToolKind",
    "AgentToolSource",
    "Architecture",
    "CodeExecutionPermission",
    "DiffusionArchitecture",
    "EmbeddingArchitecture",
    "ImageGenerationResponseFormat",
    "IsqOrganization",
    "ModelDType",
    "MultimodalArchitecture",
    "NetworkMode",
    "PagedCacheType",
    "SearchContextSize",
    "SpeechLoaderType",
    "ToolCallType",
    "ToolChoice",
    "coerce_permission",
]


class _WheelEnum(enum.IntEnum):
    """IntEnum valued by declaration index, with repr/str `ClassName.Member` like the wheel's enums."""

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> int:
        return count

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class Architecture(_WheelEnum):
    """Text model architecture for `Which.Plain`/`XLora`/`Lora` (None = detect from config.json)."""

    Mistral = enum.auto()
    Gemma = enum.auto()
    Mixtral = enum.auto()
    Llama = enum.auto()
    Phi2 = enum.auto()
    Phi3 = enum.auto()
    Qwen2 = enum.auto()
    Gemma2 = enum.auto()
    Starcoder2 = enum.auto()
    Phi3_5MoE = enum.auto()
    DeepseekV2 = enum.auto()
    DeepseekV3 = enum.auto()
    Qwen3 = enum.auto()
    GLM4 = enum.auto()
    GLM4MoeLite = enum.auto()
    GLM4Moe = enum.auto()
    Qwen3Moe = enum.auto()
    SmolLm3 = enum.auto()
    GraniteMoeHybrid = enum.auto()
    GptOss = enum.auto()
    HunYuanDenseV1 = enum.auto()
    HunYuanMoEV1 = enum.auto()
    Qwen3Next = enum.auto()
    Lfm2 = enum.auto()
    Lfm2Moe = enum.auto()


class EmbeddingArchitecture(_WheelEnum):
    """Embedding model architecture for `Which.Embedding`."""

    EmbeddingGemma = enum.auto()
    Qwen3Embedding = enum.auto()


class MultimodalArchitecture(_WheelEnum):
    """Multimodal (vision/audio) architecture for `Which.MultimodalPlain`."""

    Phi3V = enum.auto()
    Idefics2 = enum.auto()
    LLaVANext = enum.auto()
    LLaVA = enum.auto()
    Lfm2Vl = enum.auto()
    VLlama = enum.auto()
    Qwen2VL = enum.auto()
    Idefics3 = enum.auto()
    MiniCpmO = enum.auto()
    Phi4MM = enum.auto()
    Qwen2_5VL = enum.auto()
    Gemma3 = enum.auto()
    Mistral3 = enum.auto()
    Llama4 = enum.auto()
    Gemma3n = enum.auto()
    Qwen3VL = enum.auto()
    Qwen3VLMoE = enum.auto()
    Qwen3_5 = enum.auto()
    Qwen3_5Moe = enum.auto()
    Qwen4Exp = enum.auto()
    Voxtral = enum.auto()
    Gemma4 = enum.auto()
    MuseGlimmer = enum.auto()
    DiffusionGemma = enum.auto()


class DiffusionArchitecture(_WheelEnum):
    """Image diffusion architecture for `Which.DiffusionPlain`."""

    Flux = enum.auto()
    FluxOffloaded = enum.auto()


class SpeechLoaderType(_WheelEnum):
    """Speech model architecture for `Which.Speech`."""

    Dia = enum.auto()


class ModelDType(_WheelEnum):
    """Activation dtype; `Auto` tries BF16, then F16, then F32."""

    Auto = enum.auto()
    BF16 = enum.auto()
    F16 = enum.auto()
    F32 = enum.auto()


class IsqOrganization(_WheelEnum):
    """ISQ organization; `MoQE` quantizes only the MoE experts."""

    Default = enum.auto()
    MoQE = enum.auto()


class PagedCacheType(_WheelEnum):
    """PagedAttention KV-cache dtype."""

    Auto = enum.auto()
    F8E4M3 = enum.auto()


class ImageGenerationResponseFormat(_WheelEnum):
    """How `Runner.generate_image` returns images."""

    Url = enum.auto()
    B64Json = enum.auto()


class ToolChoice(_WheelEnum):
    """Whether the model may call tools (`None` on a request means Auto)."""

    NoTools = enum.auto()
    Auto = enum.auto()


class SearchContextSize(_WheelEnum):
    """Web-search result budget: 4096 / 8192 / 16384 tokens."""

    Low = enum.auto()
    Medium = enum.auto()
    High = enum.auto()


class AgentPermission(_WheelEnum):
    """Permission for server-executed agent actions (strictest wins)."""

    Auto = enum.auto()
    Ask = enum.auto()
    Deny = enum.auto()


class CodeExecutionPermission(_WheelEnum):
    """Legacy permission for the Python code executor."""

    Auto = enum.auto()
    Ask = enum.auto()
    Deny = enum.auto()


class NetworkMode(_WheelEnum):
    """Network access inside the sandbox."""

    NoNetwork = enum.auto()
    Loopback = enum.auto()
    Full = enum.auto()


class AgentToolSource(_WheelEnum):
    """Where an agent tool comes from."""

    BuiltIn = enum.auto()
    User = enum.auto()
    Mcp = enum.auto()
    External = enum.auto()


class AgentToolKind(_WheelEnum):
    """What an agent tool does."""

    CodeExecution = enum.auto()
    WebSearch = enum.auto()
    Shell = enum.auto()
    File = enum.auto()
    Custom = enum.auto()
    External = enum.auto()


class AgentToolApprovalDecisionKind(_WheelEnum):
    """Outcome of an approval callback."""

    Approve = enum.auto()
    Deny = enum.auto()


class ToolCallType(_WheelEnum):
    """Type of a returned tool call (serialized `function`)."""

    Function = enum.auto()


_E = TypeVar("_E", bound=enum.IntEnum)

_STRING_ALIASES: dict[Any, dict[str, str]] = {
    AgentPermission: {"auto": "Auto", "ask": "Ask", "deny": "Deny"},
    CodeExecutionPermission: {"auto": "Auto", "ask": "Ask", "deny": "Deny"},
    NetworkMode: {"none": "NoNetwork", "loopback": "Loopback", "full": "Full"},
    AgentToolApprovalDecisionKind: {"approve": "Approve", "deny": "Deny"},
}
_PERMISSION_FAMILY = (AgentPermission, CodeExecutionPermission)
_LABELS: dict[Any, str] = {
    AgentPermission: "agent permission",
    CodeExecutionPermission: "code execution permission",
    NetworkMode: "network mode",
    AgentToolApprovalDecisionKind: "approval decision",
}


def coerce_permission(value: Any, enum_cls: type[_E]) -> _E:
    """Return `value` as a member of `enum_cls`.

    Accepts a member of `enum_cls` or a case-insensitive (whitespace-trimmed) string:
    "auto"/"ask"/"deny" for `AgentPermission` and `CodeExecutionPermission` (a member of one of
    these two is also accepted for the other), "none"/"loopback"/"full" for `NetworkMode`,
    "approve"/"deny" for `AgentToolApprovalDecisionKind`. An unknown string raises ValueError
    (message as in the wheel: "invalid agent permission `x`; expected AgentPermission"); any
    other type, including plain ints and None, raises TypeError.
    """
    aliases = _STRING_ALIASES.get(enum_cls)
    if aliases is None:
        raise TypeError(f"coerce_permission does not support {enum_cls!r}")
    if isinstance(value, enum_cls):
        return value
    if enum_cls in _PERMISSION_FAMILY and isinstance(value, _PERMISSION_FAMILY):
        return enum_cls[value.name]
    if isinstance(value, str):
        key = value.strip().lower()
        if key in aliases:
            return enum_cls[aliases[key]]
        label = _LABELS[enum_cls]
        raise ValueError(
            f"invalid {label} `{value}`; expected {enum_cls.__name__} or one of "
            + ", ".join(repr(k) for k in aliases)
        )
    raise TypeError(
        f"expected {enum_cls.__name__} or one of " + ", ".join(repr(k) for k in aliases)
        + f", got {type(value).__name__} {value!r}"
    )
