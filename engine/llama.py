"""Native Llama-family decoder (Llama/SmolLM, Mistral, Qwen2, Qwen3) over a varlen token batch.

All scheduled tokens of all sequences are flattened into one `[T, hidden]` activation, so the
linear layers (fused QKV and gate/up) run once per step for prefill chunks and decode tokens
together; attention runs per sequence against that sequence's KV cache. Weights come from an
HF-named state dict (safetensors or dequantized GGUF). Numerics follow transformers' modeling
code (RMSNorm, rotate-half RoPE from its rope-init functions, GQA).

Not covered: sliding-window attention, MoE, multimodal inputs (the transformers fallback
handles other architectures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agentkit.engine.kv_cache import KVPool, KVSpec
from agentkit.engine.quant import INT4_EXACT_TYPES, QuantTensor, build_linear, build_lm_head

NATIVE_ARCHS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass(slots=True)
class PrefillSlice:
    """Tokens [begin, end) of the flattened batch: one sequence's chunk at positions start.."""

    begin: int
    end: int
    start: int
    blocks: torch.Tensor  # [nb] block ids covering positions 0..end-1 (in order)


@dataclass(slots=True)
class AttnMeta:
    """Where this step's K/V go and which slots each query attends to."""

    slots: torch.Tensor  # [T] slot of every new token
    prefills: list[PrefillSlice]
    decode_rows: torch.Tensor | None = None  # [B] rows of T that are single-token decodes
    decode_blocks: torch.Tensor | None = None  # [B, nb] block tables (padded with block 0)
    decode_mask: torch.Tensor | None = None  # [B, 1, 1, nb * block_size] bool: position < length


def supports(config: Any) -> bool:
    """Whether the native implementation covers this transformers config exactly."""
    if config.model_type not in NATIVE_ARCHS:
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        if window < getattr(config, "max_position_embeddings", 0):
            return False
    return not getattr(config, "mlp_bias", False)


class _Layer(nn.Module):
    def __init__(self, cfg: Any, head_dim: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        h, nh, nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.qkv = nn.Linear(h, (nh + 2 * nkv) * head_dim, bias=qkv_bias)
        self.o = nn.Linear(nh * head_dim, h, bias=bool(getattr(cfg, "attention_bias", False)))
        self.gate_up = nn.Linear(h, 2 * cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, h, bias=False)
        self.ln1 = nn.Parameter(torch.ones(h))
        self.ln2 = nn.Parameter(torch.ones(h))
        self.q_norm = nn.Parameter(torch.ones(head_dim)) if qk_norm else None
        self.k_norm = nn.Parameter(torch.ones(head_dim)) if qk_norm else None


class LlamaModel(nn.Module):
    """A Llama-family causal LM that reads HF weights and runs varlen batches."""

    def __init__(self, config: Any, dtype: torch.dtype, device: torch.device, weight_mode: str = "auto") -> None:
        super().__init__()
        cfg = self.config = config
        self.weight_mode = weight_mode
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = float(cfg.rms_norm_eps)
        self.vocab_size = cfg.vocab_size
        self.dtype, self.device = dtype, device
        qkv_bias = cfg.model_type == "qwen2" or bool(getattr(cfg, "attention_bias", False))
        qk_norm = cfg.model_type == "qwen3"
        with torch.device("meta"):
            self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.layers = nn.ModuleList(
                _Layer(cfg, self.head_dim, qkv_bias, qk_norm) for _ in range(cfg.num_hidden_layers)
            )
            self.norm = nn.Parameter(torch.ones(cfg.hidden_size))
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self._rope_cos = self._rope_sin = None
        self.kv_spec = KVSpec(cfg.num_hidden_layers, self.num_kv_heads, self.head_dim, dtype, device)

    # ---- loading -------------------------------------------------------------------------
    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Assign weights from HF names, fusing q/k/v and gate/up; ties the LM head if absent."""

        def take(name: str) -> torch.Tensor:
            if name not in sd:
                raise ValueError(f"weight {name!r} is missing from the checkpoint")
            t = sd[name]
            return (t.dequantize(self.dtype) if isinstance(t, QuantTensor) else t).to(self.device, self.dtype)

        def param(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.contiguous(), requires_grad=False)

        def raw(name: str) -> torch.Tensor | QuantTensor:
            if name not in sd:
                raise ValueError(f"weight {name!r} is missing from the checkpoint")
            return sd[name]

        mode = self.weight_mode
        quantized = any(isinstance(v, QuantTensor) for v in sd.values())

        def lin(names: list[str], bias_names: list[str] | None = None) -> nn.Module:
            biases = [take(b) for b in bias_names] if bias_names else None
            ws = [raw(n) for n in names]
            return build_linear(ws, biases, dtype=self.dtype, device=self.device, mode=self._resolve(mode, ws))

        self.embed.weight = param(take("model.embed_tokens.weight"))
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            qkv = [a + "q_proj", a + "k_proj", a + "v_proj"]
            layer.qkv = lin([n + ".weight" for n in qkv], [n + ".bias" for n in qkv] if layer.qkv.bias is not None
                            else None)
            layer.o = lin([a + "o_proj.weight"], [a + "o_proj.bias"] if layer.o.bias is not None else None)
            layer.gate_up = lin([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"])
            layer.down = lin([p + "mlp.down_proj.weight"])
            layer.ln1 = param(take(p + "input_layernorm.weight"))
            layer.ln2 = param(take(p + "post_attention_layernorm.weight"))
            if layer.q_norm is not None:
                layer.q_norm = param(take(a + "q_norm.weight"))
                layer.k_norm = param(take(a + "k_norm.weight"))
        self.norm = param(take("model.norm.weight"))
        # int4 is too lossy for the LM head; a packed model keeps an int8 head
        head_mode = mode if mode in ("dense", "int8") else ("int8" if mode == "int4" or quantized else "dense")
        if self.device.type != "cpu" and mode == "auto":
            head_mode = "dense"
        if "lm_head.weight" in sd and not getattr(self.config, "tie_word_embeddings", False):
            self.lm_head = build_lm_head(raw("lm_head.weight"), dtype=self.dtype, device=self.device, mode=head_mode)
        else:
            self.lm_head = build_lm_head(self.embed.weight, dtype=self.dtype, device=self.device, mode=head_mode)
        self._init_rope()

    def _resolve(self, mode: str, weights: list[Any]) -> str:
        """`auto` -> one packed kernel per weight kind for every batch size on CPU: GGUF 4-bit
        blocks run as int4 (exact), other GGUF blocks as int8, unquantized weights dense. One kernel
        for all M keeps results batch-invariant (a prefix-cache hit, a preemption or a busy batch
        gives the same tokens as a lone request); dense on other devices."""
        if mode != "auto":
            return mode
        if self.device.type != "cpu" or not any(isinstance(w, QuantTensor) for w in weights):
            return "dense"
        if all(isinstance(w, QuantTensor) and w.qtype in INT4_EXACT_TYPES for w in weights):
            return "int4"
        return "int8"

    def _init_rope(self) -> None:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        rope = getattr(self.config, "rope_parameters", None) or {"rope_type": "default"}
        rope_type = rope.get("rope_type", "default")
        if rope_type == "default":
            base = rope.get("rope_theta", getattr(self.config, "rope_theta", 10000.0))
            d = self.head_dim
            inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float) / d))
            scaling = 1.0
        else:
            inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](self.config, torch.device("cpu"))
        self._inv_freq = inv_freq.float()
        self._rope_scaling = float(scaling)
        self._extend_rope(int(getattr(self.config, "max_position_embeddings", 4096) or 4096))

    def _extend_rope(self, n: int) -> None:
        pos = torch.arange(n, dtype=torch.float)
        freqs = torch.outer(pos, self._inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self._rope_cos = (emb.cos() * self._rope_scaling).to(self.device, self.dtype)
        self._rope_sin = (emb.sin() * self._rope_scaling).to(self.device, self.dtype)

    # ---- forward ---------------------------------------------------------------------------
    @torch.inference_mode()
    def forward_batch(
        self, input_ids: torch.Tensor, positions: torch.Tensor, pool: KVPool, meta: AttnMeta,
        logit_rows: torch.Tensor,
    ) -> torch.Tensor:
        """Run T flattened tokens; write their KV; return logits `[len(logit_rows), V]`."""
        if int(positions.max()) >= self._rope_cos.shape[0]:
            self._extend_rope(2 * int(positions.max()) + 1)
        cos = self._rope_cos.index_select(0, positions).unsqueeze(1)  # [T, 1, d]
        sin = self._rope_sin.index_select(0, positions).unsqueeze(1)
        nh, nkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        x = self.embed(input_ids)  # [T, D]
        for li, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.ln1, self.eps)
            qkv = layer.qkv(h)  # [T, (nh + 2 nkv) d]
            q, k, v = qkv.view(-1, nh + 2 * nkv, d).split([nh, nkv, nkv], dim=1)
            if layer.q_norm is not None:
                q = F.rms_norm(q, (d,), layer.q_norm, self.eps)
                k = F.rms_norm(k, (d,), layer.k_norm, self.eps)
            q = q * cos + _rotate_half(q) * sin  # [T, nh, d]
            k = k * cos + _rotate_half(k) * sin  # [T, nkv, d]
            pool.write(li, meta.slots, k, v)
            attn = self._attend(li, q, pool, meta)  # [T, nh * d]
            x = x + layer.o(attn)
            h = F.rms_norm(x, (x.shape[-1],), layer.ln2, self.eps)
            gate, up = layer.gate_up(h).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        if logit_rows.shape[0] != x.shape[0]:
            x = x.index_select(0, logit_rows)
        x = F.rms_norm(x, (x.shape[-1],), self.norm, self.eps)
        return self.lm_head(x)

    def _attend(self, li: int, q: torch.Tensor, pool: KVPool, meta: AttnMeta) -> torch.Tensor:
        nh, d = self.num_heads, self.head_dim
        out = torch.empty(q.shape[0], nh * d, dtype=q.dtype, device=q.device)
        if meta.decode_rows is not None:
            kk, vv = pool.gather_blocks(li, meta.decode_blocks)  # [B, nb, bs, nkv, d]
            kk, vv = kk.flatten(1, 2), vv.flatten(1, 2)  # [B, nb * bs, nkv, d]
            only_decodes = not meta.prefills  # then the rows are 0..B-1 in order: no indexing
            qq = (q if only_decodes else q[meta.decode_rows]).unsqueeze(2)  # [B, nh, 1, d]
            o = F.scaled_dot_product_attention(qq, kk.transpose(1, 2), vv.transpose(1, 2),
                                               attn_mask=meta.decode_mask, enable_gqa=True)
            if only_decodes:
                return o.reshape(-1, nh * d)
            out[meta.decode_rows] = o.reshape(-1, nh * d)
        for p in meta.prefills:
            t = p.end - p.begin
            n = p.start + t
            kk, vv = pool.gather_blocks(li, p.blocks)  # [nb, bs, nkv, d]
            kk, vv = kk.flatten(0, 1)[:n], vv.flatten(0, 1)[:n]  # [n, nkv, d]
            qq = q[p.begin : p.end].transpose(0, 1).unsqueeze(0)  # [1, nh, t, d]
            mask = None
            if p.start > 0:
                mask = torch.ones(t, p.start + t, dtype=torch.bool, device=q.device).tril(diagonal=p.start)
            o = F.scaled_dot_product_attention(qq, kk.transpose(0, 1).unsqueeze(0), vv.transpose(0, 1).unsqueeze(0),
                                               attn_mask=mask, is_causal=mask is None and t > 1, enable_gqa=True)
            out[p.begin : p.end] = o[0].transpose(0, 1).reshape(t, -1)
        return out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)
