"""Model-side value types of the mistralrs-compatible API (runner-api.md §1.7 LoRA, §1.8 AnyMoE).

Scope: `AnyMoeExpertType` (sum type) and `AnyMoeConfig`, the dynamic-LoRA records
(`LoraAdapterGeneration`, `LoraAdapterInfo`, `LoraResidentGenerationInfo`, `LoraRuntimeStatus`)
and the 0.9.2 auto-map parameter records, with construction-time checks.

Non-goals: training gates, loading adapters or device mapping (engine and plugins own those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from agentkit.api.checks import (
    check_bool,
    check_float,
    check_instance,
    check_int,
    check_str,
    check_str_list,
    variant_of,
)

__all__ = [
    "AnyMoeConfig",
    "AnyMoeExpertType",
    "LoraAdapterGeneration",
    "LoraAdapterInfo",
    "LoraResidentGenerationInfo",
    "LoraRuntimeStatus",
    "MultimodalAutoMapParams",
    "TextAutoMapParams",
]


# --- AnyMoE -----------------------------------------------------------------------------------


class AnyMoeExpertType:
    """AnyMoE expert kind: `AnyMoeExpertType.FineTuned()` or `.LoraAdapter(rank, alpha, target_modules)`."""

    FineTuned: ClassVar[type[AnyMoeExpertType_FineTuned]]
    LoraAdapter: ClassVar[type[AnyMoeExpertType_LoraAdapter]]


@variant_of(AnyMoeExpertType, "FineTuned")
@dataclass(frozen=True)
class AnyMoeExpertType_FineTuned(AnyMoeExpertType):
    """Experts are the MLPs of fine-tuned models of the same architecture."""


@variant_of(AnyMoeExpertType, "LoraAdapter")
@dataclass(frozen=True)
class AnyMoeExpertType_LoraAdapter(AnyMoeExpertType):
    """Experts are base MLP + a LoRA delta `B·A·(alpha/rank)` on `target_modules`."""

    rank: int
    alpha: float
    target_modules: list[str]

    def __post_init__(self) -> None:
        owner = "AnyMoeExpertType.LoraAdapter"
        check_int(owner, "rank", self.rank, minimum=1)
        object.__setattr__(self, "alpha", check_float(owner, "alpha", self.alpha))
        object.__setattr__(self, "target_modules", check_str_list(owner, "target_modules", self.target_modules))


@dataclass
class AnyMoeConfig:
    """Turn a dense model into a per-layer mixture of experts (`Runner(anymoe_config=...)`)."""

    hidden_size: int
    dataset_json: str
    prefix: str
    mlp: str
    model_ids: list[str]
    expert_type: AnyMoeExpertType
    layers: list[int] = field(default_factory=list)
    lr: float = 1e-3
    epochs: int = 100
    batch_size: int = 4
    gate_model_id: str | None = None
    training: bool = True
    loss_csv_path: str | None = None
    gate_init: str | None = None
    """agentkit extension: "hidden" builds each gate from the mean hidden states of each expert's
    prompts (no training needed; the start of training when `training=True`)."""
    routing: str = "sequence"
    """agentkit extension: "sequence" (mistralrs: top-1 of the sequence's mean gate distribution) or
    "token" (per-token top-`top_k` of the non-base experts, the base expert always shared)."""
    top_k: int = 1
    """agentkit extension: experts mixed per token when `routing="token"`."""

    def __post_init__(self) -> None:
        owner = "AnyMoeConfig"
        check_int(owner, "hidden_size", self.hidden_size, minimum=1)
        self.dataset_json = check_str(owner, "dataset_json", self.dataset_json, path=True)
        check_str(owner, "prefix", self.prefix)
        check_str(owner, "mlp", self.mlp)
        self.model_ids = check_str_list(owner, "model_ids", self.model_ids, path=True)
        if not self.model_ids:
            raise ValueError(f"{owner}: `model_ids` must name at least one expert model")
        check_instance(owner, "expert_type", self.expert_type, AnyMoeExpertType, optional=False)
        if not isinstance(self.layers, (list, tuple)):
            raise TypeError(f"{owner}: `layers` must be a list of int, got {self.layers!r}")
        self.layers = [check_int(owner, f"layers[{i}]", v) for i, v in enumerate(self.layers)]
        self.lr = check_float(owner, "lr", self.lr)
        check_int(owner, "epochs", self.epochs)
        check_int(owner, "batch_size", self.batch_size, minimum=1)
        check_str(owner, "gate_model_id", self.gate_model_id, optional=True)
        check_bool(owner, "training", self.training)
        path = check_str(owner, "loss_csv_path", self.loss_csv_path, optional=True, path=True)
        if path is not None and not path.endswith(".csv"):
            raise ValueError(f"{owner}: `loss_csv_path` must end in .csv, got {path!r}")
        self.loss_csv_path = path
        if self.gate_init not in (None, "hidden"):
            raise ValueError(f"{owner}: `gate_init` must be None or 'hidden', got {self.gate_init!r}")
        if self.routing not in ("sequence", "token"):
            raise ValueError(f"{owner}: `routing` must be 'sequence' or 'token', got {self.routing!r}")
        check_int(owner, "top_k", self.top_k, minimum=1)


# --- dynamic LoRA -----------------------------------------------------------------------------

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class LoraAdapterGeneration:
    """An exact adapter generation (64 hex chars, the content hash); pass as `adapter=` to pin it."""

    generation: str

    def __post_init__(self) -> None:
        check_str("LoraAdapterGeneration", "generation", self.generation)
        if not _HEX64.fullmatch(self.generation):
            raise ValueError(
                f"invalid adapter generation {self.generation!r}: expected exactly 64 hexadecimal characters"
            )
        object.__setattr__(self, "generation", self.generation.lower())

    def __str__(self) -> str:
        return self.generation


@dataclass(frozen=True)
class LoraAdapterInfo:
    """A loaded adapter alias and the generation it currently points to."""

    alias: str
    source: str
    revision: str | None
    generation: str
    rank: int
    bytes: int

    def exact(self) -> LoraAdapterGeneration:
        """This generation as a `LoraAdapterGeneration` (pins it for a request)."""
        return LoraAdapterGeneration(self.generation)


@dataclass(frozen=True)
class LoraResidentGenerationInfo:
    """Residency and lease state of one immutable adapter generation."""

    generation: str
    aliases: list[str]
    rank: int
    bytes: int
    retired: bool
    active_leases: int


@dataclass(frozen=True)
class LoraRuntimeStatus:
    """Snapshot of a dynamic-LoRA runtime (`Runner.lora_adapter_status()`)."""

    adapters: list[LoraAdapterInfo]
    generations: list[LoraResidentGenerationInfo]
    resident_generations: int
    retired_generations: int
    resident_bytes: int
    max_adapters: int
    max_rank: int
    max_bytes: int


@dataclass(frozen=True)
class TextAutoMapParams:
    """0.9.2 auto device-map sizing for text models (removed from `Which` in 0.9.5; kept as a record)."""

    max_seq_len: int = 4096
    max_batch_size: int = 1


@dataclass(frozen=True)
class MultimodalAutoMapParams:
    """0.9.2 auto device-map sizing for multimodal models (kept as a record)."""

    max_seq_len: int = 4096
    max_batch_size: int = 1
    max_num_images: int = 1
    max_image_length: int = 1024
