"""Native GGUF reading for the engine: metadata -> transformers config, tensors -> HF state dict.

Scope: llama-family GGUF files (``general.architecture`` llama, mistral, qwen2, qwen3) are read
with the `gguf` package: the file is memory-mapped by `GGUFReader`, each tensor is dequantized
with `gguf.quants.dequantize`, converted to the requested torch dtype straight away (so peak
memory stays near the final model size), reshaped to the HF layout and renamed to HF parameter
names. llama.cpp's rotary permutation of ``attn_q``/``attn_k`` in llama/mistral files is undone
exactly as transformers does. The config is built from the GGUF metadata (`gguf_config.py`). Split GGUFs (several files) are supported.
Other architectures go through transformers' own GGUF loader when it supports them.
With ``keep_quantized=True`` the 2-D linear weights stored as Q4_0, Q4_1, Q4_K or Q8_0 are kept
as their raw blocks (`agentkit.engine.quant.QuantTensor`, rows un-permuted like the dense path);
the token embedding, norms and every other type stay dense.

Non-goals: tokenizer extraction (the tokenizer module reads GGUF vocabularies), mixture-of-experts
and multimodal GGUFs, keeping weights quantized on the transformers fallback path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.engine.loading.gguf_config import PERMUTED_ARCHS, native_config, scalar_metadata
from agentkit.errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

    from agentkit.engine.quant import QuantTensor

__all__ = ["NATIVE_GGUF_ARCHITECTURES", "GGUFContents", "gguf_tensor_to_hf_name", "open_reader", "read_gguf",
           "tensor_to_quant"]

#: ``general.architecture`` values loaded natively (llama-style metadata keys and tensor names).
NATIVE_GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
_TOP_LEVEL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_ROPE_FREQS = "rope_freqs.weight"


@dataclass
class GGUFContents:
    """What a GGUF file yields: HF model type, config, HF-named tensors and the chat template.

    ``state_dict`` values are dense tensors, or `QuantTensor` for kept-quantized linear weights.
    """

    arch: str
    gguf_arch: str
    config: PretrainedConfig
    state_dict: dict[str, torch.Tensor | QuantTensor]
    chat_template: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def gguf_tensor_to_hf_name(name: str) -> str | None:
    """HF parameter name of a llama-family GGUF tensor name, or None if it has no counterpart."""
    if name in _TOP_LEVEL_NAMES:
        return _TOP_LEVEL_NAMES[name]
    m = _BLOCK_RE.match(name)
    if m is None or m.group(2) not in _BLOCK_NAMES:
        return None
    return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.{m.group(3)}"


def _reverse_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (transformers' `_reverse_permute_weights`)."""
    rows = w.shape[0]
    dim = rows // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _permute_rows(w: torch.Tensor | QuantTensor, n_head: int) -> torch.Tensor | QuantTensor:
    """`_reverse_permute` over output rows; for a QuantTensor, over the rows of its block data."""
    from agentkit.engine.quant import QuantTensor

    if isinstance(w, QuantTensor):
        return QuantTensor(_reverse_permute(w.data, n_head).contiguous(), w.qtype, w.shape)
    return _reverse_permute(w, n_head)


def tensor_to_quant(t: Any) -> QuantTensor | None:
    """The raw blocks of a 2-D GGUF tensor of a kept type as a QuantTensor (copied out of the
    memory map), or None when it is 1-D or of another type."""
    import numpy as np
    import torch

    from agentkit.engine.quant import KEEP_QUANTIZED_TYPES, QuantTensor

    if t.tensor_type not in KEEP_QUANTIZED_TYPES or len(t.shape) != 2:
        return None
    shape = (int(t.shape[1]), int(t.shape[0]))  # ggml order is (in, out)
    data = torch.from_numpy(np.array(t.data.view(np.ndarray)))
    return QuantTensor(data.reshape(shape[0], -1), t.tensor_type, shape)


def open_reader(path: str) -> Any:
    """`GGUFReader` over `path`, parsed through plain ndarray views of its memory map.

    `GGUFReader` slices its `np.memmap` once per metadata item, and memmap slicing costs ~10 us
    of Python each: 2.3 s for a 49k-token vocabulary. Reading through an ndarray view of the same
    mapping gives identical fields and tensors in 0.7 s. Falls back to the stock reader if the
    package's internals differ.
    """
    import numpy as np

    from agentkit.engine.shadowed_imports import ensure_package

    ensure_package("gguf")
    from gguf import GGUFReader

    class _FastReader(GGUFReader):
        def _get(self, offset, dtype, count=1, override_order=None):  # type: ignore[override]
            plain = self.__dict__.get("_agentkit_plain")
            if plain is None:
                plain = self.__dict__["_agentkit_plain"] = self.data.view(np.ndarray)
            count = int(count)
            arr = plain[offset : offset + np.dtype(dtype).itemsize * count].view(dtype=dtype)[:count]
            return arr.view(
                arr.dtype.newbyteorder(self.byte_order if override_order is None else override_order)
            )

    try:
        return _FastReader(path)
    except Exception:
        return GGUFReader(path)


def _tensor_to_torch(t: Any, dtype: torch.dtype) -> torch.Tensor:
    """Dequantize one GGUF tensor into a CPU torch tensor of `dtype` in HF (row-major) shape."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed([int(x) for x in t.shape]))
    qtype = t.tensor_type
    # A plain ndarray view of the memory map: same bytes, but without np.memmap's per-slice
    # Python overhead, which otherwise triples dequantization time.
    data = t.data.view(np.ndarray)
    if qtype == GGMLQuantizationType.F16 and dtype == torch.float16:
        out = torch.from_numpy(np.array(data.view(np.float16)))
    elif qtype == GGMLQuantizationType.BF16 and dtype == torch.bfloat16:
        out = torch.from_numpy(np.array(data.view(np.uint16))).view(torch.bfloat16)
    else:
        arr = dequantize(data, qtype)
        if qtype == GGMLQuantizationType.F32:
            arr = np.array(arr)  # a view of the read-only memory map: copy it
        out = torch.from_numpy(arr)
        if out.dtype != dtype:
            out = out.to(dtype)
    return out.reshape(shape)


def _sort_key(name: str) -> tuple[int, str]:
    m = _BLOCK_RE.match(name)
    if m:
        return (int(m.group(1)) + 1, name)
    return (0 if name.startswith("token_embd") else 1 << 30, name)


def _load_with_transformers(
    paths: list[str], gguf_arch: str, dtype: torch.dtype
) -> tuple[str, PretrainedConfig, dict]:
    """Fallback for architectures without a native mapping: transformers' GGUF loader."""
    import torch

    native = ", ".join(NATIVE_GGUF_ARCHITECTURES)
    if len(paths) != 1:
        raise ModelLoadError(
            f"GGUF architecture {gguf_arch!r} is only supported as a single file (native: {native})"
        )
    directory, name = os.path.split(paths[0])
    try:
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        config = AutoConfig.from_pretrained(directory, gguf_file=name)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        parsed = load_gguf_checkpoint(
            paths[0], return_tensors=True, model_to_load=skeleton, torch_dtype=dtype
        )
    except Exception as exc:
        raise ModelLoadError(
            f"GGUF architecture {gguf_arch!r} is not supported: agentkit loads {native} GGUFs natively and"
            f" transformers' GGUF loader failed too ({type(exc).__name__}: {exc})"
        ) from exc
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in parsed["tensors"].items()}
    expected = set(skeleton.state_dict())
    if getattr(config, "tie_word_embeddings", False):
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(tensors))
    if missing:
        raise ModelLoadError(
            f"GGUF architecture {gguf_arch!r}: transformers' GGUF loader left {len(missing)} weights unmapped"
            f" (e.g. {missing[:3]}); this architecture is not supported"
        )
    return config.model_type, config, tensors


def _check_complete(tensors: dict[str, Any], meta: dict[str, Any], gguf_arch: str) -> None:
    """Every block must have its attention, MLP and norm tensors (catches missing split parts)."""
    n_layers = meta.get(f"{gguf_arch}.block_count")
    if not isinstance(n_layers, int):
        return  # native_config reports the missing key
    per_layer = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
        "attn_norm",
        "ffn_norm",
    ]
    if gguf_arch == "qwen3":
        per_layer += ["attn_q_norm", "attn_k_norm"]
    required = ["token_embd.weight", "output_norm.weight"]
    required += [f"blk.{i}.{part}.weight" for i in range(n_layers) for part in per_layer]
    missing = [name for name in required if name not in tensors]
    if missing:
        raise ModelLoadError(
            f"GGUF {gguf_arch} file lacks {len(missing)} tensors (e.g. {missing[:3]}); if the model is split"
            " into several .gguf files, pass all of them as a list"
        )


def read_gguf(
    paths: list[str], *, dtype: torch.dtype, progress: bool = True, keep_quantized: bool = False
) -> GGUFContents:
    """Read one GGUF model (several paths for a split GGUF) into an HF-named state dict.

    Tensors are dense `dtype` tensors; with `keep_quantized`, 2-D linear weights stored as
    Q4_0/Q4_1/Q4_K/Q8_0 are `QuantTensor` blocks instead (``token_embd`` stays dense; its
    ``dequantize(dtype)`` equals the dense tensor this function returns otherwise).

    Raises ModelLoadError (a ValueError) for unsupported architectures, mixture-of-experts files,
    unknown tensor names, incomplete metadata, and truncated or hostile files (declared sizes
    beyond the file's end, see `agentkit.engine.loading.gguf_check`).
    """
    from tqdm.auto import tqdm

    from agentkit.engine.loading.gguf_check import check_gguf_file

    readers = []
    for path in paths:
        check_gguf_file(path)  # declared sizes vs file size: the reader trusts them
        try:
            readers.append(open_reader(path))
        except Exception as exc:
            raise ModelLoadError(
                f"{path!r} is not a readable GGUF file ({type(exc).__name__}: {exc})"
            ) from exc
    meta = scalar_metadata(readers[0])
    gguf_arch = meta.get("general.architecture")
    if not isinstance(gguf_arch, str):
        raise ModelLoadError(f"{paths[0]!r} has no general.architecture metadata; not a model GGUF")
    chat_template = meta.get("tokenizer.chat_template")
    chat_template = chat_template if isinstance(chat_template, str) else None

    tensors: dict[str, Any] = {}
    for reader in readers:
        for t in reader.tensors:
            if t.name in tensors:
                raise ModelLoadError(f"tensor {t.name!r} appears twice in GGUF files {paths}")
            tensors[t.name] = t

    n_experts = meta.get(f"{gguf_arch}.expert_count") or 0
    if gguf_arch not in NATIVE_GGUF_ARCHITECTURES or n_experts:
        label = f"{gguf_arch} (mixture of experts)" if n_experts else gguf_arch
        arch, config, state_dict = _load_with_transformers(paths, label, dtype)
        return GGUFContents(arch, gguf_arch, config, state_dict, chat_template, meta)

    name = meta.get("general.name")
    model_type = gguf_arch
    if gguf_arch == "llama" and isinstance(name, str) and "mistral" in name.lower():
        model_type = "mistral"  # llama.cpp stores Mistral models as llama (transformers does the same)

    unknown = sorted(n for n in tensors if n != _ROPE_FREQS and gguf_tensor_to_hf_name(n) is None)
    if unknown:
        raise ModelLoadError(
            f"GGUF {gguf_arch} file has tensors agentkit cannot map: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; this model variant is not supported"
        )

    split_count = meta.get("split.count")
    if isinstance(split_count, int) and split_count > len(paths):
        raise ModelLoadError(
            f"{os.path.basename(paths[0])} is part 1 of a GGUF split into {split_count} files; pass all"
            " parts as quantized_filename=[...]"
        )
    _check_complete(tensors, meta, gguf_arch)

    freq_factors = None
    if _ROPE_FREQS in tensors:
        import torch

        freq_factors = _tensor_to_torch(tensors[_ROPE_FREQS], torch.float32).flatten().tolist()
    config = native_config(meta, tensors, gguf_arch, model_type, freq_factors)
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads

    state_dict: dict[str, torch.Tensor | QuantTensor] = {}
    names = sorted((n for n in tensors if n != _ROPE_FREQS), key=_sort_key)
    label = os.path.basename(paths[0])
    with tqdm(total=len(names), desc=f"Loading {label}", unit="tensor", disable=not progress) as bar:
        for gguf_name in names:
            w = None
            if keep_quantized and gguf_name != "token_embd.weight":
                w = tensor_to_quant(tensors[gguf_name])
            if w is None:
                w = _tensor_to_torch(tensors[gguf_name], dtype)
            if gguf_arch in PERMUTED_ARCHS:
                if ".attn_q." in gguf_name:
                    w = _permute_rows(w, n_heads)
                elif ".attn_k." in gguf_name:
                    w = _permute_rows(w, n_kv)
            state_dict[gguf_tensor_to_hf_name(gguf_name)] = w  # type: ignore[index]
            bar.update(1)
    return GGUFContents(model_type, gguf_arch, config, state_dict, chat_template, meta)
