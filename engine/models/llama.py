"""Native Llama-family decoder (Llama/SmolLM, Mistral, Qwen2, Qwen3) over a varlen token batch.

All scheduled tokens of all sequences are flattened into one `[T, hidden]` activation, so the
linear layers (fused QKV and gate/up) run once per step for prefill chunks and decode tokens
together; attention runs per sequence against that sequence's KV cache. Each decoder layer has
real `self_attn` (`LlamaAttention`) and `mlp` (`LlamaMLP`) submodules that it calls, so a plugin
can wrap or replace them. Loading is two steps: `load_hf_state_dict` assigns an HF-named state
dict (safetensors, or GGUF with packed `QuantTensor` blocks) into `LoadedLinear` layers that keep
the weights as stored; `quantize()` then swaps them for the serving kernels
(`agentkit.engine.models.linear.quantize_model`). `engine_prepare_model` runs between the two. Numerics
follow transformers' modeling code (RMSNorm, rotate-half RoPE from its rope-init functions, GQA).

Pipeline placement (`num_device_layers`, a `LayerPlacement` with several stages): each stage's
layers hold their weights on the stage's device and attend over that stage's pool of a
`StagedKVPool`; the embeddings, final norm, LM head and RoPE tables stay on the main `device`.
The hidden states, RoPE rows and attention metadata move once per stage boundary per step; a
model on one device runs the plain layer loop.

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
from agentkit.engine.kv_stages import StagedKVPool
from agentkit.engine.loading.device_map import LayerPlacement
from agentkit.engine.models.linear import LoadedLinear, quantize_model
from agentkit.engine.quant import QuantTensor

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
    # Instead of the three above (speculative verify steps; bit-exact): one SDPA call per (rows, blocks,
    # mask), each row attending over exactly its own blocks as a decode step would; calls that share
    # one `blocks` tensor object gather its K/V once (model_runner.NativeRunner._decode_groups)
    decode_groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = None

    def to(self, device: torch.device) -> AttnMeta:
        """A copy with every tensor on `device` (for a pipeline stage there)."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return AttnMeta(mv(self.slots), [PrefillSlice(p.begin, p.end, p.start, p.blocks.to(device)) for p in self.prefills],
                        mv(self.decode_rows), mv(self.decode_blocks), mv(self.decode_mask),
                        None if self.decode_groups is None else [(r.to(device), b.to(device), mv(m))
                                                                 for r, b, m in self.decode_groups])


def supports(config: Any) -> bool:
    """Whether the native implementation covers this transformers config exactly."""
    if config.model_type not in NATIVE_ARCHS:
        return False
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        if window < getattr(config, "max_position_embeddings", 0):
            return False
    return not getattr(config, "mlp_bias", False)


class LlamaMLP(nn.Module):
    """SwiGLU MLP: ``down(silu(gate) * up)`` with gate and up fused into one linear (``gate_up``)."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, hidden] -> [T, hidden]``."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class LlamaAttention(nn.Module):
    """GQA self-attention with fused QKV, optional QK-norm and RoPE over the paged KV cache."""

    def __init__(self, cfg: Any, layer_idx: int, head_dim: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        h, nh, nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.layer_idx, self.num_heads, self.num_kv_heads, self.head_dim = layer_idx, nh, nkv, head_dim
        self.kv_layer = layer_idx  # this layer's index in its pool (its position in its stage when placed)
        self.eps = float(cfg.rms_norm_eps)
        self.qkv = nn.Linear(h, (nh + 2 * nkv) * head_dim, bias=qkv_bias)
        self.o = nn.Linear(nh * head_dim, h, bias=bool(getattr(cfg, "attention_bias", False)))
        self.q_norm = nn.Parameter(torch.ones(head_dim)) if qk_norm else None
        self.k_norm = nn.Parameter(torch.ones(head_dim)) if qk_norm else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pool: KVPool,
                meta: AttnMeta) -> torch.Tensor:
        """``[T, hidden] -> [T, hidden]``; writes this step's K/V into `pool`."""
        nh, nkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = self.qkv(x)  # [T, (nh + 2 nkv) d]
        q, k, v = qkv.view(-1, nh + 2 * nkv, d).split([nh, nkv, nkv], dim=1)
        if self.q_norm is not None:
            q = F.rms_norm(q, (d,), self.q_norm, self.eps)
            k = F.rms_norm(k, (d,), self.k_norm, self.eps)
        q = q * cos + _rotate_half(q) * sin  # [T, nh, d]
        k = k * cos + _rotate_half(k) * sin  # [T, nkv, d]
        pool.write(self.kv_layer, meta.slots, k, v)
        return self.o(self._attend(q, pool, meta))

    def _attend(self, q: torch.Tensor, pool: KVPool, meta: AttnMeta) -> torch.Tensor:
        li, nh, d = self.kv_layer, self.num_heads, self.head_dim
        out = torch.empty(q.shape[0], nh * d, dtype=q.dtype, device=q.device)
        gathered: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # groups sharing one table tensor
        for rows, blocks, mask in meta.decode_groups or ():
            if id(blocks) not in gathered:
                kk, vv = pool.gather_blocks(li, blocks)
                gathered[id(blocks)] = kk.flatten(1, 2).transpose(1, 2), vv.flatten(1, 2).transpose(1, 2)
            kk, vv = gathered[id(blocks)]
            o = F.scaled_dot_product_attention(q[rows].unsqueeze(2), kk, vv, attn_mask=mask, enable_gqa=True)
            out[rows] = o.reshape(-1, nh * d)
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


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: ``x + self_attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: Any, layer_idx: int, head_dim: int, qkv_bias: bool, qk_norm: bool) -> None:
        super().__init__()
        self.eps = float(cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg, layer_idx, head_dim, qkv_bias, qk_norm)
        self.mlp = LlamaMLP(cfg.hidden_size, cfg.intermediate_size)
        self.ln1 = nn.Parameter(torch.ones(cfg.hidden_size))
        self.ln2 = nn.Parameter(torch.ones(cfg.hidden_size))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pool: KVPool,
                meta: AttnMeta) -> torch.Tensor:
        """``[T, hidden] -> [T, hidden]`` (the residual stream after this layer)."""
        x = x + self.self_attn(F.rms_norm(x, (x.shape[-1],), self.ln1, self.eps), cos, sin, pool, meta)
        return x + self.mlp(F.rms_norm(x, (x.shape[-1],), self.ln2, self.eps))


class LlamaModel(nn.Module):
    """A Llama-family causal LM that reads HF weights and runs varlen batches."""

    def __init__(self, config: Any, dtype: torch.dtype, device: torch.device, weight_mode: str = "auto",
                 placement: LayerPlacement | None = None) -> None:
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
                LlamaDecoderLayer(cfg, i, self.head_dim, qkv_bias, qk_norm) for i in range(cfg.num_hidden_layers)
            )
            self.norm = nn.Parameter(torch.ones(cfg.hidden_size))
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self._rope_cos = self._rope_sin = None
        self.kv_spec = KVSpec(cfg.num_hidden_layers, self.num_kv_heads, self.head_dim, dtype, device)
        # (device, first layer, end) per pipeline stage; None: every layer on `device`
        self.stages: tuple[tuple[torch.device, int, int], ...] | None = None
        if placement is not None and len(placement.stages) > 1:
            if len(placement.devices) != cfg.num_hidden_layers:
                raise ValueError(f"the placement covers {len(placement.devices)} layers, the model has "
                                 f"{cfg.num_hidden_layers}")
            self.stages = tuple((torch.device(st.device), st.start, st.stop) for st in placement.stages)
            self._stage_layers = {start: tuple(self.layers[start:stop]) for _d, start, stop in self.stages}
            for _dev, start, stop in self.stages:
                for i in range(start, stop):
                    self.layers[i].self_attn.kv_layer = i - start

    def layer_device(self, index: int) -> torch.device:
        """The device decoder layer `index` runs on."""
        for dev, start, stop in self.stages or ():
            if start <= index < stop:
                return dev
        return self.device

    def stage_specs(self) -> list[KVSpec]:
        """The KV shape of each pipeline stage (its layers, on its device)."""
        s = self.kv_spec
        return [KVSpec(stop - start, s.num_kv_heads, s.head_dim, s.dtype, dev) for dev, start, stop in self.stages or ()]

    def new_pool(self, num_blocks: int, block_size: int, cache_type: str = "auto") -> KVPool | StagedKVPool:
        """A KV pool for this model: one `KVPool`, or one per pipeline stage (same block ids)."""
        if self.stages is None:
            return KVPool(self.kv_spec, num_blocks, block_size, cache_type)
        if self.kv_spec.aux_layers:
            from agentkit.errors import NotSupportedError

            raise NotSupportedError("a plugin's per-token KV state (AnyMoE) cannot span several devices: keep "
                                    "every layer on one device (num_device_layers=[\"500\"] or device=)")
        return StagedKVPool(self.stage_specs(), num_blocks, block_size, cache_type)

    # ---- loading -------------------------------------------------------------------------
    def load_hf_state_dict(self, sd: dict[str, torch.Tensor | QuantTensor]) -> None:
        """Assign weights from HF names; ties the LM head if absent. Linear weights stay as the
        checkpoint gave them (dense, or packed GGUF blocks) in `LoadedLinear` modules, q/k/v and
        gate/up as fused parts; `quantize()` swaps them for the serving kernels."""

        def take(name: str, device: torch.device = self.device) -> torch.Tensor:
            t = raw(name)
            return (t.dequantize(self.dtype) if isinstance(t, QuantTensor) else t).to(device, self.dtype)

        def param(t: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(t.contiguous(), requires_grad=False)

        def raw(name: str) -> torch.Tensor | QuantTensor:
            if name not in sd:
                raise ValueError(f"weight {name!r} is missing from the checkpoint")
            return sd[name]

        def lin(names: list[str], bias_names: list[str] | None = None) -> LoadedLinear:
            bias = torch.cat([take(b).reshape(-1) for b in bias_names]) if bias_names else None
            return LoadedLinear([raw(n) for n in names], bias, self.dtype)

        self.embed.weight = param(take("model.embed_tokens.weight"))
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            dev = self.layer_device(i)
            attn, mlp = layer.self_attn, layer.mlp
            qkv = [a + "q_proj", a + "k_proj", a + "v_proj"]
            attn.qkv = lin([n + ".weight" for n in qkv], [n + ".bias" for n in qkv] if attn.qkv.bias is not None
                           else None)
            attn.o = lin([a + "o_proj.weight"], [a + "o_proj.bias"] if attn.o.bias is not None else None)
            mlp.gate_up = lin([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"])
            mlp.down = lin([p + "mlp.down_proj.weight"])
            layer.ln1 = param(take(p + "input_layernorm.weight", dev))
            layer.ln2 = param(take(p + "post_attention_layernorm.weight", dev))
            if attn.q_norm is not None:
                attn.q_norm = param(take(a + "q_norm.weight", dev))
                attn.k_norm = param(take(a + "k_norm.weight", dev))
        self.norm = param(take("model.norm.weight"))
        if "lm_head.weight" in sd and not getattr(self.config, "tie_word_embeddings", False):
            self.lm_head = LoadedLinear([raw("lm_head.weight")], None, self.dtype)
        else:
            self.lm_head = LoadedLinear([self.embed.weight.detach()], None, self.dtype)
        self._init_rope()

    def quantize(self) -> int:
        """Swap the linear layers for the serving kernels of `weight_mode` (see `quantize_model`)."""
        placed = {self.layers[i]: dev for dev, start, stop in self.stages or () for i in range(start, stop)}
        return quantize_model(self, mode=self.weight_mode, device=self.device, dtype=self.dtype,
                              submodule_devices=placed or None)

    @torch.inference_mode()
    def logits_for(self, token_ids: list[int], block_size: int = 32, cache_type: str = "auto",
                   last: int | None = None) -> torch.Tensor:
        """Logits ``[T, V]`` for every position of a fresh sequence (only the `last` positions' rows when
        given), in a private scratch KV pool."""
        n = len(token_ids)
        blocks = -(-n // block_size)
        scratch = self.new_pool(blocks, block_size, cache_type)
        g = torch.arange(n, device=self.device)
        meta = AttnMeta(slots=g, prefills=[PrefillSlice(0, n, 0, torch.arange(blocks, device=self.device))])
        rows = g if last is None else g[max(0, n - last):]
        return self.forward_batch(torch.tensor(token_ids, device=self.device), g, scratch, meta, rows)

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
        self, input_ids: torch.Tensor, positions: torch.Tensor, pool: KVPool | StagedKVPool, meta: AttnMeta,
        logit_rows: torch.Tensor,
    ) -> torch.Tensor:
        """Run T flattened tokens; write their KV; return logits `[len(logit_rows), V]`."""
        if int(positions.max()) >= self._rope_cos.shape[0]:
            self._extend_rope(2 * int(positions.max()) + 1)
        cos = self._rope_cos.index_select(0, positions).unsqueeze(1)  # [T, 1, d]
        sin = self._rope_sin.index_select(0, positions).unsqueeze(1)
        x = self.embed(input_ids)  # [T, D]
        if self.stages is None:
            for layer in self.layers:
                x = layer(x, cos, sin, pool, meta)
        else:
            x = self._run_stages(x, cos, sin, pool, meta)
        if logit_rows.shape[0] != x.shape[0]:
            x = x.index_select(0, logit_rows)
        x = F.rms_norm(x, (x.shape[-1],), self.norm, self.eps)
        return self.lm_head(x)

    def _run_stages(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pool: StagedKVPool,
                    meta: AttnMeta) -> torch.Tensor:
        """The decoder layers stage by stage, each on its device with its own pool; back to `device`."""
        for (dev, start, _stop), stage_pool in zip(self.stages, pool.pools):
            m = meta if dev == self.device else meta.to(dev)
            x, c, s = x.to(dev), cos.to(dev), sin.to(dev)
            for layer in self._stage_layers[start]:
                x = layer(x, c, s, stage_pool, m)
        return x.to(self.device)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)
