"""GGUF metadata -> a transformers config for the native llama-family architectures.

Scope: the scalar metadata of a GGUF header as a dict, and the `PretrainedConfig` built from it
(sizes, heads, norms, rope base and scaling, including llama3-style rope scaling recovered from a
``rope_freqs`` tensor), with `ModelLoadError` naming a missing or inconsistent key.

Non-goals: reading tensors (`gguf.py`), checking declared sizes (`gguf_check.py`), architectures
other than llama, mistral, qwen2 and qwen3.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from agentkit.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = ["PERMUTED_ARCHS", "llama3_rope_factors", "native_config", "scalar_metadata"]

# llama.cpp's converter permutes q/k rows of these architectures for its rotary layout.
PERMUTED_ARCHS = ("llama", "mistral")

_CAUSAL_LM_CLASS = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}

def scalar_metadata(reader: Any) -> dict[str, Any]:
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


def llama3_rope_factors(base: float, dim: int, factor: float, low: float, high: float, orig: int) -> list[float]:
    """The `rope_freqs` tensor llama.cpp writes for llama3 rope scaling (its convert_hf_to_gguf
    `LlamaModel.generate_extra_tensors` recipe); the loader matches a file's tensor against it."""
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
            expected = llama3_rope_factors(base, head_dim, factor, low, high, orig)
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


def native_config(
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
    elif gguf_arch in PERMUTED_ARCHS and f"{p}.rope.dimension_count" in meta:
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
