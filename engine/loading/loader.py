"""Model loading for the engine: weights, config and side files into a `LoadedModel` value.

Scope: `load_plain` reads a transformers-format directory (config.json + *.safetensors, sharded
or not) and `load_gguf` reads GGUF files (see `agentkit.engine.loading.gguf`); both resolve hub
ids from the local HF cache only (`agentkit.engine.loading.hub`), return CPU tensors with HF parameter
names in the requested dtype, and parse generation_config.json / tokenizer_config.json when
present. `resolve_dtype` maps the `ModelDType` names to a torch dtype for a device.

`load_gguf(keep_quantized=True)` keeps Q4_0/Q4_1/Q4_K/Q8_0 linear weights as
`agentkit.engine.quant.QuantTensor` blocks for the quantized linear layers of `agentkit.engine.quant`.

Non-goals: building the torch module (the model builder ties embeddings and places weights),
downloading, pickle-based checkpoints (`torch.load` is never used), tokenizers, quantizing
weights that are not quantized in the file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from agentkit.engine.loading.hub import read_json, resolve_model_dir
from agentkit.errors import ConfigError, ModelLoadError, ModelNotFoundError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

    from agentkit.engine.quant import QuantTensor

__all__ = ["LoadedModel", "load_gguf", "load_plain", "normalise_keys", "resolve_dtype", "safetensors_files"]

_DTYPE_NAMES = ("auto", "bf16", "f16", "f32")
_PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass
class LoadedModel:
    """Everything the model builder needs: HF config, CPU weights and the side files.

    Weights are dense tensors, except linear weights loaded with ``load_gguf(keep_quantized=True)``,
    which are `QuantTensor` blocks.
    """

    model_id: str
    arch: str
    config: PretrainedConfig
    state_dict: dict[str, torch.Tensor | QuantTensor]
    dtype: torch.dtype
    model_dir: str | None
    gguf_path: str | None
    generation_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] | None = None
    gguf_chat_template: str | None = None
    max_position_embeddings: int | None = None


def resolve_dtype(dtype_name: str, device: torch.device) -> torch.dtype:
    """Torch dtype for a `ModelDType` name (``auto``, ``bf16``, ``f16``, ``f32``) on `device`.

    ``auto`` is float32 on CPU (fastest for single-stream decode there) and, on CUDA, bfloat16
    when the device supports it, else float16. Other devices get float32.
    """
    import torch

    name = getattr(dtype_name, "name", dtype_name)  # tolerate an enum member
    if not isinstance(name, str) or name.lower() not in _DTYPE_NAMES:
        raise ConfigError(
            f"unknown dtype {dtype_name!r}: use one of {', '.join(_DTYPE_NAMES)} (ModelDType names)"
        )
    name = name.lower()
    if name == "f32":
        return torch.float32
    if name == "f16":
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, _ = torch.cuda.get_device_capability(index)
        return torch.bfloat16 if major >= 8 else torch.float16
    return torch.float32


def _json_object(path: str) -> dict[str, Any] | None:
    """The JSON object at `path`; None when the file is absent or holds no object; ModelLoadError if invalid."""
    data = read_json(path, missing_ok=True, error=ModelLoadError)
    return data if isinstance(data, dict) else None


def safetensors_files(model_dir: str) -> list[str]:
    """The checkpoint's .safetensors files (from the index when there is one), in load order."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = (_json_object(index) or {}).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no weight_map; the sharded checkpoint is incomplete")
        files = list(dict.fromkeys(weight_map.values()))
        missing = [f for f in files if not os.path.isfile(os.path.join(model_dir, f))]
        if missing:
            raise ModelLoadError(
                f"{model_dir}: shards listed in model.safetensors.index.json are missing: {missing}"
            )
        return [os.path.join(model_dir, f) for f in files]
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    skip = ("consolidated", "adapter_model")  # Mistral-native duplicates and LoRA adapters
    return sorted(
        p
        for p in glob.glob(os.path.join(model_dir, "*.safetensors"))
        if not os.path.basename(p).startswith(skip)
    )


def pickle_weight_files(directory: str) -> list[str]:
    """Names of pickle checkpoints (never loaded) in `directory`, for error messages."""
    return sorted({os.path.basename(p) for pat in _PICKLE_WEIGHTS for p in glob.glob(os.path.join(directory, pat))})


def _no_weights_error(model_dir: str) -> ModelLoadError:
    pickled = pickle_weight_files(model_dir)
    if pickled:
        return ModelLoadError(
            f"{model_dir} holds only pickle checkpoints ({', '.join(pickled[:3])}); agentkit loads weights only"
            " from *.safetensors or GGUF (never torch.load). Convert once where you trust the file:"
            " `AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`,"
            " or use a GGUF."
        )
    return ModelLoadError(
        f"{model_dir} contains no *.safetensors weights (nor a model.safetensors.index.json)"
    )


def _checked(path: str, read: Callable[[], Any]) -> Any:
    """`read()` with safetensors' own errors (not ValueErrors, no file name) as ModelLoadError."""
    from safetensors import SafetensorError

    try:
        return read()
    except (SafetensorError, OSError, RuntimeError) as exc:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:1] == b"\x80" or head == b"PK\x03\x04":  # pickle protocol 2+, or torch.save's zip
            raise ModelLoadError(
                f"{path} is a pickle (torch.save) checkpoint named like safetensors; agentkit never unpickles"
                " weights. Convert it where you trust the file, or use the real *.safetensors files"
            ) from exc
        raise ModelLoadError(
            f"cannot read safetensors file {path} ({exc}); it is truncated or corrupt (an interrupted"
            " download?): re-download it"
        ) from exc


def normalise_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop stale rotary buffers; prefix base-model checkpoints (``layers.0...``) with ``model.``."""
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}
    if (
        state_dict
        and not any(k.startswith("model.") for k in state_dict)
        and any(k.startswith(("layers.", "embed_tokens.")) for k in state_dict)
    ):
        state_dict = {k if k.startswith("lm_head.") else f"model.{k}": v for k, v in state_dict.items()}
    return state_dict


def load_plain(
    model_id: str,
    *,
    dtype: torch.dtype,
    hf_cache_path: str | None = None,
    token: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load a transformers-format model (directory or cached hub id) from safetensors.

    Floating-point tensors are converted to `dtype` one by one as they are read. When the config
    ties word embeddings, ``lm_head.weight`` is left out (the builder ties it to the embedding).
    """
    from safetensors import safe_open
    from tqdm.auto import tqdm
    from transformers import AutoConfig

    model_dir = resolve_model_dir(model_id, hf_cache_path=hf_cache_path, token=token)
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        gguf = sorted(os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "*.gguf")))
        hint = f" It holds GGUF files ({', '.join(gguf[:3])}): use Which.GGUF." if gguf else ""
        pickled = pickle_weight_files(model_dir)
        if pickled and not gguf:
            hint = (f" It holds pickle weights ({', '.join(pickled[:3])}), which agentkit never loads: only"
                    " *.safetensors (with config.json) or GGUF files are loaded.")
        raise ModelLoadError(
            f"{model_dir} has no config.json, so it is not a transformers model directory.{hint}"
        )
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not read the model config in {model_dir}: {exc}") from exc

    files = safetensors_files(model_dir)
    if not files:
        raise _no_weights_error(model_dir)

    state_dict: dict[str, torch.Tensor] = {}
    handles = [_checked(path, partial(safe_open, path, framework="pt", device="cpu")) for path in files]
    total = sum(len(h.keys()) for h in handles)
    with tqdm(
        total=total,
        desc=f"Loading {os.path.basename(model_dir.rstrip(os.sep))}",
        unit="tensor",
        disable=not progress,
    ) as bar:
        for path, handle in zip(files, handles):
            for key in handle.keys():
                t = _checked(path, partial(handle.get_tensor, key))
                if t.is_floating_point() and t.dtype != dtype:
                    t = t.to(dtype)
                state_dict[key] = t
                bar.update(1)
    del handles
    state_dict = normalise_keys(state_dict)
    return _loaded(model_id, config.model_type, config, state_dict, dtype, model_dir)


def load_gguf(
    quantized_model_id: str,
    quantized_filename: str | list[str],
    *,
    dtype: torch.dtype,
    hf_cache_path: str | None = None,
    token: str | None = None,
    progress: bool = True,
    keep_quantized: bool = False,
) -> LoadedModel:
    """Load a GGUF model (a directory or cached hub id plus one file name, or a list for split GGUFs).

    Weights are dequantized to dense `dtype` tensors with HF names; with `keep_quantized`, 2-D
    linear weights stored as Q4_0/Q4_1/Q4_K/Q8_0 are returned as `QuantTensor` blocks instead
    (the token embedding, norms and other types stay dense; feed them to
    `agentkit.engine.models.kernels.build_linear`). The config is built from the GGUF metadata. generation_config.json / tokenizer_config.json are read if the directory has
    them; ``gguf_chat_template`` is the template stored in the GGUF.
    """
    names = [quantized_filename] if isinstance(quantized_filename, str) else list(quantized_filename or [])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"quantized_filename must be a file name or a non-empty list of them, got {quantized_filename!r}"
        )
    model_dir = resolve_model_dir(
        quantized_model_id, hf_cache_path=hf_cache_path, token=token, filename=names[0]
    )
    paths = []
    for name in names:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise ModelNotFoundError(
                f"GGUF file {name!r} not found in {model_dir} (model {quantized_model_id!r})"
            )
        paths.append(path)

    from agentkit.engine.loading.gguf import read_gguf

    if not isinstance(keep_quantized, bool):
        raise ConfigError(f"keep_quantized must be True or False, got {keep_quantized!r}")
    contents = read_gguf(paths, dtype=dtype, progress=progress, keep_quantized=keep_quantized)
    return _loaded(quantized_model_id, contents.arch, contents.config, contents.state_dict, dtype, model_dir,
                   gguf_path=paths[0], gguf_chat_template=contents.chat_template)


def _loaded(model_id: str, arch: str, config: Any, state_dict: dict[str, Any], dtype: Any, model_dir: str,
            gguf_path: str | None = None, gguf_chat_template: str | None = None) -> LoadedModel:
    """The `LoadedModel` record: a tied LM head dropped, the directory's generation/tokenizer configs read."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False):
        state_dict.pop("lm_head.weight", None)
    return LoadedModel(
        model_id=model_id, arch=arch, config=config, state_dict=state_dict, dtype=dtype, model_dir=model_dir,
        gguf_path=gguf_path,
        generation_config=_json_object(os.path.join(model_dir, "generation_config.json")) or {},
        tokenizer_config=_json_object(os.path.join(model_dir, "tokenizer_config.json")),
        gguf_chat_template=gguf_chat_template,
        max_position_embeddings=getattr(text_config, "max_position_embeddings", None),
    )
