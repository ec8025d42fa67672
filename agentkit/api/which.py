"""`Which`: what model to load (runner-api.md §1.4), and `LoraAdapter` for preloaded adapters.

Scope: the thirteen `Which` variants of the `mistralrs` 0.9.5 wheel as frozen dataclasses that
subclass `Which` and are reachable as `Which.Plain`, `Which.GGUF`, ... with the wheel's positional
order, defaults and keyword-only markers; argument type checks at construction (TypeError naming
the field). Path-like arguments (`os.PathLike`) are accepted wherever a string is and stored as
`str`; `organization` also accepts "default"/"moqe" (the wheel cannot, since `IsqOrganization`
is not importable there).

Non-goals: resolving, downloading or loading anything; checking that paths exist; the removed
0.9.2 `auto_map_params` arguments (passing them is a TypeError, as in the wheel).
"""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass, fields
from typing import Any, ClassVar

from agentkit.api.checks import check_int, check_str, check_str_list
from agentkit.api.enums import (
    Architecture,
    DiffusionArchitecture,
    EmbeddingArchitecture,
    IsqOrganization,
    ModelDType,
    MultimodalArchitecture,
    SpeechLoaderType,
)

__all__ = ["LoraAdapter", "Which"]


def _paths(obj: Any, name: str, value: Any, *, required: bool = False, allow_list: bool = False) -> None:
    """Check a `str` (or `str | list[str]` when allow_list; PathLike allowed) field and store it as str/list."""
    owner = type(obj).__qualname__
    if allow_list and isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{owner}: `{name}` must not be an empty list")
        object.__setattr__(obj, name, check_str_list(owner, name, value, path=True))
    else:
        object.__setattr__(obj, name, check_str(owner, name, value, optional=not required, path=True))


def _enum(obj: Any, name: str, value: Any, enum_cls: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, enum_cls):
        hint = f"{enum_cls.__name__} or None" if optional else enum_cls.__name__
        raise TypeError(
            f"{type(obj).__qualname__}: `{name}` must be {hint} (e.g. {enum_cls.__name__}."
            f"{next(iter(enum_cls)).name}), got {type(value).__name__} {value!r}"
        )


class Which:
    """Base class of every model-selection variant; construct one of `Which.Plain(...)`, etc."""

    _KIND: ClassVar[str] = ""
    _PATHS: ClassVar[tuple[str, ...]] = ()
    _REQUIRED: ClassVar[tuple[str, ...]] = ()
    _INTS: ClassVar[tuple[str, ...]] = ()
    _ARCH: ClassVar[Any] = None

    # Nested variant classes, assigned below the definitions.
    Plain: ClassVar[type[Which_Plain]]
    Embedding: ClassVar[type[Which_Embedding]]
    XLora: ClassVar[type[Which_XLora]]
    Lora: ClassVar[type[Which_Lora]]
    GGUF: ClassVar[type[Which_GGUF]]
    XLoraGGUF: ClassVar[type[Which_XLoraGGUF]]
    LoraGGUF: ClassVar[type[Which_LoraGGUF]]
    GGML: ClassVar[type[Which_GGML]]
    XLoraGGML: ClassVar[type[Which_XLoraGGML]]
    LoraGGML: ClassVar[type[Which_LoraGGML]]
    MultimodalPlain: ClassVar[type[Which_MultimodalPlain]]
    DiffusionPlain: ClassVar[type[Which_DiffusionPlain]]
    Speech: ClassVar[type[Which_Speech]]

    @property
    def kind(self) -> str:
        """The variant name: "Plain", "GGUF", "MultimodalPlain", ..."""
        return self._KIND

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        names = values.keys()
        for name in self._PATHS:
            if name in names:
                allow_list = name in ("from_uqff", "mmproj_filename") or (
                    name == "quantized_filename" and "GGML" not in self._KIND
                )
                _paths(self, name, getattr(self, name), required=name in self._REQUIRED, allow_list=allow_list)
        for name in self._INTS:
            check_int(type(self).__qualname__, name, getattr(self, name), optional=name not in self._REQUIRED)
        if "dtype" in names:
            _enum(self, "dtype", values["dtype"], ModelDType, optional=False)
        if "arch" in names:
            _enum(self, "arch", values["arch"], self._ARCH, optional="arch" not in self._REQUIRED)
        if "organization" in names:
            org = values["organization"]
            if isinstance(org, str):
                table = {"default": IsqOrganization.Default, "moqe": IsqOrganization.MoQE}
                if org.strip().lower() not in table:
                    raise ValueError(f"{type(self).__qualname__}: unknown organization {org!r}; use 'default' or 'moqe'")
                org = table[org.strip().lower()]
                object.__setattr__(self, "organization", org)
            _enum(self, "organization", org, IsqOrganization)
        if "adapters" in names:
            adapters = values["adapters"]
            if adapters is not None:
                if not isinstance(adapters, (list, tuple)) or not all(isinstance(a, LoraAdapter) for a in adapters):
                    raise TypeError(f"{type(self).__qualname__}: `adapters` must be a list of LoraAdapter or None")
                object.__setattr__(self, "adapters", list(adapters))


def _variant(kind: str, *, paths: tuple[str, ...], required: tuple[str, ...], ints: tuple[str, ...] = (),
             arch: Any = None) -> Any:
    """Class decorator (above `@dataclass(frozen=True)`): variant metadata + `Which.<kind>` registration."""

    def wrap(cls: type) -> type:
        cls._KIND = kind  # type: ignore[attr-defined]
        cls._PATHS = paths  # type: ignore[attr-defined]
        cls._REQUIRED = required  # type: ignore[attr-defined]
        cls._INTS = ints  # type: ignore[attr-defined]
        cls._ARCH = arch  # type: ignore[attr-defined]
        cls.__qualname__ = f"Which.{kind}"
        setattr(Which, kind, cls)
        return cls

    return wrap


_UQFF = ("tokenizer_json", "topology", "write_uqff", "from_uqff", "hf_cache_path")
_QUANT = ("quantized_model_id", "quantized_filename", "tok_model_id", "tokenizer_json", "topology")
_LORA_LIMITS = ("max_adapters", "max_rank", "max_bytes")


@_variant("Plain", paths=("model_id", *_UQFF, "imatrix", "calibration_file", "matformer_config_path",
                          "matformer_slice_name"), required=("model_id",), arch=Architecture)
@dataclass(frozen=True)
class Which_Plain(Which):
    """A full-precision (safetensors) text model; `in_situ_quant` on the Runner quantizes it."""

    model_id: str
    arch: Architecture | None = None
    tokenizer_json: str | None = None
    topology: str | None = None
    organization: IsqOrganization | None = None
    write_uqff: str | None = None
    from_uqff: str | list[str] | None = None
    dtype: ModelDType = ModelDType.Auto
    imatrix: str | None = None
    calibration_file: str | None = None
    hf_cache_path: str | None = None
    matformer_config_path: str | None = None
    matformer_slice_name: str | None = None


@_variant("Embedding", paths=("model_id", *_UQFF, "imatrix", "calibration_file"), required=("model_id",),
          arch=EmbeddingArchitecture)
@dataclass(frozen=True)
class Which_Embedding(Which):
    """A text-embedding model, used with `Runner.send_embedding_request`."""

    model_id: str
    arch: EmbeddingArchitecture | None = None
    tokenizer_json: str | None = None
    topology: str | None = None
    write_uqff: str | None = None
    from_uqff: str | list[str] | None = None
    dtype: ModelDType = ModelDType.Auto
    hf_cache_path: str | None = None
    imatrix: str | None = None
    calibration_file: str | None = None


@_variant("XLora", paths=("xlora_model_id", "order", "model_id", *_UQFF), required=("xlora_model_id", "order"),
          ints=("tgt_non_granular_index",), arch=Architecture)
@dataclass(frozen=True)
class Which_XLora(Which):
    """An X-LoRA model; `order` is the ordering JSON (base model from it when `model_id` is None)."""

    xlora_model_id: str
    order: str
    arch: Architecture | None = None
    model_id: str | None = None
    tokenizer_json: str | None = None
    tgt_non_granular_index: int | None = None
    topology: str | None = None
    write_uqff: str | None = None
    from_uqff: str | list[str] | None = None
    dtype: ModelDType = ModelDType.Auto
    hf_cache_path: str | None = None


@_variant("Lora", paths=("model_id", *_UQFF), required=("model_id", *_LORA_LIMITS), ints=_LORA_LIMITS,
          arch=Architecture)
@dataclass(frozen=True)
class Which_Lora(Which):
    """A base model with a dynamic-LoRA runtime (adapters loaded/unloaded at run time)."""

    model_id: str
    adapters: list[LoraAdapter] | None = None
    arch: Architecture | None = None
    tokenizer_json: str | None = None
    topology: str | None = None
    write_uqff: str | None = None
    from_uqff: str | list[str] | None = None
    dtype: ModelDType = ModelDType.Auto
    hf_cache_path: str | None = None
    max_adapters: int = 16
    max_rank: int = 256
    max_bytes: int = 8589934592


@_variant("GGUF", paths=(*_QUANT, "mmproj_filename", "write_uqff", "imatrix", "calibration_file", "hf_cache_path",
                         "matformer_config_path", "matformer_slice_name"),
          required=("quantized_model_id", "quantized_filename", *_LORA_LIMITS),
          ints=("max_edge", *_LORA_LIMITS, "encoder_cache_memory_bytes"))
@dataclass(frozen=True)
class Which_GGUF(Which):
    """A GGUF model (one file or a list of shards); `adapters`/limits enable dynamic LoRA."""

    quantized_model_id: str
    quantized_filename: str | list[str]
    tok_model_id: str | None = None
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto
    _: KW_ONLY
    tokenizer_json: str | None = None
    mmproj_filename: str | list[str] | None = None
    organization: IsqOrganization | None = None
    write_uqff: str | None = None
    imatrix: str | None = None
    calibration_file: str | None = None
    max_edge: int | None = None
    adapters: list[LoraAdapter] | None = None
    max_adapters: int = 16
    max_rank: int = 256
    max_bytes: int = 8589934592
    hf_cache_path: str | None = None
    matformer_config_path: str | None = None
    matformer_slice_name: str | None = None
    encoder_cache_memory_bytes: int | None = None


@_variant("XLoraGGUF", paths=(*_QUANT, "xlora_model_id", "order"),
          required=("quantized_model_id", "quantized_filename", "xlora_model_id", "order"),
          ints=("tgt_non_granular_index",))
@dataclass(frozen=True)
class Which_XLoraGGUF(Which):
    """A GGUF base model with an X-LoRA adapter set."""

    quantized_model_id: str
    quantized_filename: str | list[str]
    xlora_model_id: str
    order: str
    tok_model_id: str | None = None
    tgt_non_granular_index: int | None = None
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto


@_variant("LoraGGUF", paths=(*_QUANT, "adapters_model_id", "order"),
          required=("quantized_model_id", "quantized_filename", "adapters_model_id", "order"))
@dataclass(frozen=True)
class Which_LoraGGUF(Which):
    """A GGUF base model with static (legacy) LoRA adapters from an ordering file."""

    quantized_model_id: str
    quantized_filename: str | list[str]
    adapters_model_id: str
    order: str
    tok_model_id: str | None = None
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto


@_variant("GGML", paths=_QUANT, required=("quantized_model_id", "quantized_filename", "tok_model_id", "gqa"),
          ints=("gqa",))
@dataclass(frozen=True)
class Which_GGML(Which):
    """A legacy GGML model file; `tok_model_id` supplies the tokenizer."""

    quantized_model_id: str
    quantized_filename: str
    tok_model_id: str
    tokenizer_json: str | None = None
    gqa: int = 1
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto


@_variant("XLoraGGML", paths=(*_QUANT, "xlora_model_id", "order"),
          required=("quantized_model_id", "quantized_filename", "xlora_model_id", "order", "gqa"),
          ints=("tgt_non_granular_index", "gqa"))
@dataclass(frozen=True)
class Which_XLoraGGML(Which):
    """A GGML base model with an X-LoRA adapter set."""

    quantized_model_id: str
    quantized_filename: str
    xlora_model_id: str
    order: str
    tok_model_id: str | None = None
    tokenizer_json: str | None = None
    tgt_non_granular_index: int | None = None
    gqa: int = 1
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto


@_variant("LoraGGML", paths=(*_QUANT, "adapters_model_id", "order"),
          required=("quantized_model_id", "quantized_filename", "adapters_model_id", "order", "gqa"), ints=("gqa",))
@dataclass(frozen=True)
class Which_LoraGGML(Which):
    """A GGML base model with static (legacy) LoRA adapters from an ordering file."""

    quantized_model_id: str
    quantized_filename: str
    adapters_model_id: str
    order: str
    tok_model_id: str | None = None
    tokenizer_json: str | None = None
    gqa: int = 1
    topology: str | None = None
    dtype: ModelDType = ModelDType.Auto


@_variant("MultimodalPlain", paths=("model_id", *_UQFF, "calibration_file", "imatrix", "matformer_config_path",
                                    "matformer_slice_name"), required=("model_id",),
          ints=("max_edge", "encoder_cache_memory_bytes"), arch=MultimodalArchitecture)
@dataclass(frozen=True)
class Which_MultimodalPlain(Which):
    """A vision/audio-language model (formerly `VisionPlain`)."""

    model_id: str
    arch: MultimodalArchitecture | None = None
    tokenizer_json: str | None = None
    topology: str | None = None
    write_uqff: str | None = None
    from_uqff: str | list[str] | None = None
    dtype: ModelDType = ModelDType.Auto
    max_edge: int | None = None
    calibration_file: str | None = None
    imatrix: str | None = None
    hf_cache_path: str | None = None
    matformer_config_path: str | None = None
    matformer_slice_name: str | None = None
    organization: IsqOrganization | None = None
    encoder_cache_memory_bytes: int | None = None


@_variant("DiffusionPlain", paths=("model_id",), required=("model_id", "arch"), arch=DiffusionArchitecture)
@dataclass(frozen=True)
class Which_DiffusionPlain(Which):
    """An image-diffusion model (FLUX), used with `Runner.generate_image`."""

    model_id: str
    arch: DiffusionArchitecture
    dtype: ModelDType = ModelDType.Auto


@_variant("Speech", paths=("model_id", "dac_model_id"), required=("model_id", "arch"), arch=SpeechLoaderType)
@dataclass(frozen=True)
class Which_Speech(Which):
    """A text-to-speech model (Dia), used with `Runner.generate_audio`."""

    model_id: str
    arch: SpeechLoaderType
    dac_model_id: str | None = None
    dtype: ModelDType = ModelDType.Auto


@dataclass(frozen=True)
class LoraAdapter:
    """A dynamic LoRA adapter preloaded at start-up: `alias` to select it, `source` = HF repo or path."""

    alias: str
    source: str
    revision: str | None = None

    def __post_init__(self) -> None:
        for name in ("alias", "source", "revision"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike) and name == "source":
                object.__setattr__(self, name, os.fspath(value))
            elif not (isinstance(value, str) or (value is None and name == "revision")):
                raise TypeError(f"LoraAdapter: `{name}` must be a str, got {type(value).__name__} {value!r}")
        if not self.alias.strip():
            raise ValueError("LoraAdapter: `alias` must not be empty")
