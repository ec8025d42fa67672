"""Native GGUF reading for the engine: metadata -> transformers config, tensors -> HF state dict.

Scope: llama-family GGUF files (``general.architecture`` llama, mistral, qwen2, qwen3) are read
with the `gguf` package: the file is memory-mapped by `GGUFReader`, each tensor is dequantized
with `gguf.quants.dequantize`, converted to the requested torch dtype straight away (so peak
memory stays near the final model size), reshaped to the HF layout and renamed to HF parameter
names. llama.cpp's rotary permutation of ``attn_q``/``attn_k`` in llama/mistral files is undone
exactly as transformers does. The config is built from the GGUF metadata, including llama3-style
rope scaling recovered from a ``rope_freqs`` tensor. Split GGUFs (several files) are supported.
Other architectures go through transformers' own GGUF loader when it supports them.
With ``keep_quantized=True`` the 2-D linear weights stored as Q4_0, Q4_1, Q4_K or Q8_0 are kept
as their raw blocks (`agentkit.engine.quant.QuantTensor`, rows un-permuted like the dense path);
the token embedding, norms and every other type stay dense.

Non-goals: tokenizer extraction (the tokenizer module reads GGUF vocabularies), mixture-of-experts
and multimodal GGUFs, keeping weights quantized on the transformers fallback path.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkit.errors import ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

    from agentkit.engine.quant import QuantTensor

__all__ = ["NATIVE_GGUF_ARCHITECTURES", "GGUFContents", "gguf_tensor_to_hf_name", "read_gguf"]

#: ``general.architecture`` values loaded natively (llama-style metadata keys and tensor names).
NATIVE_GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
# llama.cpp's converter permutes q/k rows of these architectures for its rotary layout.
_PERMUTED_ARCHS = ("llama", "mistral")
_CAUSAL_LM_CLASS = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
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


def _scalar_metadata(reader: Any) -> dict[str, Any]:
    """Metadata fields except the large tokenizer arrays (only their lengths are kept)."""
    meta: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key in (
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.scores",
        ):
            meta[key + "#len"] = len(fld.data)
            continue
        try:
            meta[key] = fld.contents()
        except Exception:  # unparseable field: skip, it is not one we use
            continue
    return meta


def _uniform_int(value: Any, key: str) -> int:
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise ModelLoadError(
                f"GGUF metadata {key} varies per layer ({value}); this architecture variant is not supported"
            )
        value = value[0]
    return int(value)


def _llama3_factors(base: float, dim: int, factor: float, low: float, high: float, orig: int) -> list[float]:
    # Same recipe as llama.cpp's convert_hf_to_gguf (LlamaModel.generate_extra_tensors).
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (base ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def _rope_from_freq_factors(factors: list[float], base: float, head_dim: int) -> dict[str, Any] | None:
    """Recover transformers' llama3 rope parameters from a llama.cpp ``rope_freqs`` tensor."""
    if len(factors) != head_dim // 2:
        return None
    if all(abs(f - 1.0) < 1e-6 for f in factors):
        return {}
    factor = max(factors)
    for orig in (8192, 4096, 2048, 16384, 32768, 131072):
        for low, high in ((1.0, 4.0), (1.0, 2.0), (2.0, 4.0)):
            expected = _llama3_factors(base, head_dim, factor, low, high, orig)
            if all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(factors, expected)):
                return {
                    "rope_type": "llama3",
                    "factor": float(factor),
                    "low_freq_factor": low,
                    "high_freq_factor": high,
                    "original_max_position_embeddings": orig,
                }
    return None


def _rope_parameters(
    meta: dict[str, Any], prefix: str, head_dim: int, freq_factors: list[float] | None
) -> dict[str, Any]:
    theta = float(meta.get(f"{prefix}.rope.freq_base", 10000.0))
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": theta}
    scaling = meta.get(f"{prefix}.rope.scaling.type")
    factor = meta.get(f"{prefix}.rope.scaling.factor")
    orig = meta.get(f"{prefix}.rope.scaling.original_context_length")
    if scaling == "linear" and factor:
        rope.update(rope_type="linear", factor=float(factor))
    elif scaling == "yarn" and factor:
        rope.update(rope_type="yarn", factor=float(factor))
        if orig:
            rope["original_max_position_embeddings"] = int(orig)
        for gguf_key, hf_key in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            if f"{prefix}.rope.scaling.{gguf_key}" in meta:
                rope[hf_key] = float(meta[f"{prefix}.rope.scaling.{gguf_key}"])
    elif scaling not in (None, "none"):
        warnings.warn(
            f"GGUF rope scaling type {scaling!r} is not supported; using unscaled rope", stacklevel=3
        )
    if freq_factors is not None:
        llama3 = _rope_from_freq_factors(freq_factors, theta, head_dim)
        if llama3 is None:
            warnings.warn(
                "GGUF rope_freqs tensor does not match llama3 rope scaling; ignoring it (long-context"
                " positions may be off)",
                stacklevel=3,
            )
        elif llama3:
            rope.update(llama3)
    return rope


def _native_config(
    meta: dict[str, Any],
    tensors: dict[str, Any],
    gguf_arch: str,
    model_type: str,
    freq_factors: list[float] | None,
) -> PretrainedConfig:
    from transformers import AutoConfig

    p = gguf_arch

    def required(key: str) -> Any:
        full = f"{p}.{key}"
        if full not in meta:
            raise ModelLoadError(
                f"GGUF file lacks metadata key {full!r}; it is not a complete {gguf_arch} GGUF"
            )
        return meta[full]

    n_layers = _uniform_int(required("block_count"), f"{p}.block_count")
    hidden = _uniform_int(required("embedding_length"), f"{p}.embedding_length")
    intermediate = _uniform_int(required("feed_forward_length"), f"{p}.feed_forward_length")
    n_heads = _uniform_int(required("attention.head_count"), f"{p}.attention.head_count")
    n_kv = _uniform_int(meta.get(f"{p}.attention.head_count_kv", n_heads), f"{p}.attention.head_count_kv")
    eps = float(required("attention.layer_norm_rms_epsilon"))

    # head_dim: the q projection's output rows are the ground truth; then key_length, dimension_count.
    q = tensors.get("blk.0.attn_q.weight")
    if q is not None:
        head_dim = int(q.shape[-1]) // n_heads
    elif f"{p}.attention.key_length" in meta:
        head_dim = int(meta[f"{p}.attention.key_length"])
    elif gguf_arch in _PERMUTED_ARCHS and f"{p}.rope.dimension_count" in meta:
        head_dim = int(meta[f"{p}.rope.dimension_count"])
    else:
        head_dim = hidden // n_heads

    vocab = meta.get(f"{p}.vocab_size") or meta.get("tokenizer.ggml.tokens#len")
    embed = tensors.get("token_embd.weight")
    if embed is not None and (vocab is None or int(vocab) != int(embed.shape[-1])):
        vocab = int(embed.shape[-1])  # the embedding matrix is what the weights need
    if vocab is None:
        raise ModelLoadError(
            "GGUF file gives no vocabulary size (no vocab_size, tokens or token_embd.weight)"
        )

    kwargs: dict[str, Any] = dict(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv,
        head_dim=head_dim,
        rms_norm_eps=eps,
        rope_parameters=_rope_parameters(meta, p, head_dim, freq_factors),
        tie_word_embeddings="output.weight" not in tensors,
        architectures=[_CAUSAL_LM_CLASS[model_type]],
    )
    if f"{p}.context_length" in meta:
        kwargs["max_position_embeddings"] = int(meta[f"{p}.context_length"])
    for gguf_key, hf_key in (
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("padding_token_id", "pad_token_id"),
    ):
        if f"tokenizer.ggml.{gguf_key}" in meta:
            kwargs[hf_key] = int(meta[f"tokenizer.ggml.{gguf_key}"])
    has_qkv_bias = "blk.0.attn_q.bias" in tensors
    if model_type in ("llama", "mistral", "qwen3"):
        kwargs["attention_bias"] = has_qkv_bias
    if model_type == "llama":
        kwargs["mlp_bias"] = "blk.0.ffn_down.bias" in tensors
    if model_type == "mistral":
        sw = meta.get(f"{p}.attention.sliding_window")
        kwargs["sliding_window"] = int(sw) if sw else None
    return AutoConfig.for_model(model_type, **kwargs)


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


def _tensor_to_quant(t: Any) -> QuantTensor | None:
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


def _open_reader(path: str) -> Any:
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
        return  # _native_config reports the missing key
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
            readers.append(_open_reader(path))
        except Exception as exc:
            raise ModelLoadError(
                f"{path!r} is not a readable GGUF file ({type(exc).__name__}: {exc})"
            ) from exc
    meta = _scalar_metadata(readers[0])
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
    config = _native_config(meta, tensors, gguf_arch, model_type, freq_factors)
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads

    state_dict: dict[str, torch.Tensor | QuantTensor] = {}
    names = sorted((n for n in tensors if n != _ROPE_FREQS), key=_sort_key)
    label = os.path.basename(paths[0])
    with tqdm(total=len(names), desc=f"Loading {label}", unit="tensor", disable=not progress) as bar:
        for gguf_name in names:
            w = None
            if keep_quantized and gguf_name != "token_embd.weight":
                w = _tensor_to_quant(tensors[gguf_name])
            if w is None:
                w = _tensor_to_torch(tensors[gguf_name], dtype)
            if gguf_arch in _PERMUTED_ARCHS:
                if ".attn_q." in gguf_name:
                    w = _permute_rows(w, n_heads)
                elif ".attn_k." in gguf_name:
                    w = _permute_rows(w, n_kv)
            state_dict[gguf_tensor_to_hf_name(gguf_name)] = w  # type: ignore[index]
            bar.update(1)
    return GGUFContents(model_type, gguf_arch, config, state_dict, chat_template, meta)
