"""Model runners: turn a scheduled batch into logits, owning each sequence's KV state.

`NativeRunner` drives the native Llama-family model on a flattened varlen batch (one forward
per engine step for every prefill chunk and decode token). `HFRunner` is the fallback for every
other transformers architecture: same interface, one forward per sequence with a
transformers `DynamicCache`. Both take HF-named weights already in memory. Only the native runner
places decoder layers over several devices (`placement`, from `num_device_layers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agentkit.engine.kv_cache import KVSpec, plan_num_blocks
from agentkit.engine.kv_stages import plan_staged_blocks
from agentkit.engine.loading.device_map import LayerPlacement
from agentkit.engine.models.llama import AttnMeta, LlamaModel, PrefillSlice, supports
from agentkit.engine.sequence import Sequence

#: Called once per loaded model with the `torch.nn.Module`, before quantization and KV sizing.
PrepareModel = Callable[[torch.nn.Module], None]


@dataclass(slots=True)
class KVOptions:
    """Paged-cache options: block size, storage type and the budget knobs (see kv_cache.py)."""

    block_size: int = 32
    cache_type: str = "auto"
    ctxt_len: int | None = None
    mem_usage: float | None = None
    mem_mb: int | None = None
    memory_goal: str | float | None = None

    def plan(self, spec: KVSpec, max_seq_len: int) -> int:
        return plan_num_blocks(spec, self.block_size, max_seq_len=max_seq_len, cache_type=self.cache_type,
                               ctxt_len=self.ctxt_len, mem_usage=self.mem_usage, mem_mb=self.mem_mb,
                               memory_goal=self.memory_goal)

    @property
    def per_device(self) -> bool:
        """Whether the budget in force is a fraction of a device's free memory."""
        if self.ctxt_len is not None:
            return False
        goal = self.memory_goal
        return self.mem_usage is not None or (self.mem_mb is None and isinstance(goal, (int, float)))


@dataclass(slots=True)
class BatchItem:
    """Feed `seq.token_ids[start:start+count]`; `need_logits` if this chunk ends the known tokens.

    `draft` (speculative decoding, decode items only): tokens fed after the decode token at the
    next positions; each is scored as a decode row and returns its own logits row."""

    seq: Sequence
    start: int
    count: int
    need_logits: bool
    draft: tuple[int, ...] = ()


class ModelRunner(Protocol):
    """What the engine needs from a model: batched execution and KV ownership."""

    vocab_size: int
    max_seq_len: int
    device: torch.device
    kind: str
    block_size: int
    num_blocks: int
    supports_prefix_cache: bool

    def execute(self, items: list[BatchItem]) -> torch.Tensor:
        """Run the batch; return logits `[sum(need_logits) + drafts, V]` in item order (an item
        with a draft gets 1 + len(draft) rows)."""
        ...

    def free(self, seq: Sequence) -> None:
        """Drop the sequence's KV state."""
        ...

    def logits_for(self, token_ids: list[int], last: int | None = None) -> torch.Tensor:
        """Logits `[T, V]` for every position of a fresh sequence (parity tests, scoring); only
        the `last` positions' rows when given (scoring a short continuation of a long prompt)."""
        ...

    def save_kv(self, seq: Sequence, num_tokens: int) -> tuple[Any, int]:
        """A copy of the KV of the sequence's first `num_tokens` tokens, and its size in bytes."""
        ...

    def saved_nbytes(self, num_tokens: int) -> int:
        """The size `save_kv` of `num_tokens` tokens will have."""
        ...

    def restore_kv(self, seq: Sequence, saved: Any) -> None:
        """Put `save_kv`'s copy back (into the sequence's new blocks)."""
        ...

    def pool_nbytes(self) -> int:
        """Bytes of KV the pool holds (the default swap-space budget)."""
        ...


class NativeRunner:
    """Runs `LlamaModel` over flattened batches, K/V in a paged `KVPool`."""

    kind = "native"
    supports_prefix_cache = True

    def __init__(self, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int, kv: KVOptions | None = None, weight_mode: str = "auto",
                 prepare: PrepareModel | None = None, placement: LayerPlacement | None = None) -> None:
        kv = kv or KVOptions()
        self.model = LlamaModel(config, dtype, device, weight_mode, placement)
        self.model.load_hf_state_dict(state_dict)
        self.model.eval()
        if prepare is not None:
            prepare(self.model)
        self.model.quantize()
        self.vocab_size = config.vocab_size
        self.max_seq_len = max_seq_len
        self.device = device
        self.block_size = kv.block_size
        self.num_blocks = plan_staged_blocks(lambda spec: kv.plan(spec, max_seq_len), self.model.kv_spec,
                                             self.model.stage_specs(), kv.per_device)
        self.pool = self.model.new_pool(self.num_blocks, kv.block_size, kv.cache_type)

    def execute(self, items: list[BatchItem]) -> torch.Tensor:
        bs, dev = self.block_size, self.device
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        rows: list[int] = []
        dec_rows: list[int] = []
        dec_tables: list[list[int]] = []
        dec_lens: list[int] = []
        meta = AttnMeta(slots=torch.empty(0), prefills=[])
        for it in items:
            s, bt = it.seq, it.seq.block_table
            begin = len(ids)
            end = it.start + it.count
            if it.draft:  # decode rows, so every row's logits are a plain decode step's
                for p, tok in enumerate((s.token_ids[it.start], *it.draft), it.start):
                    dec_rows.append(len(ids))
                    rows.append(len(ids))
                    ids.append(tok)
                    pos.append(p)
                    slots.append(bt[p // bs] * bs + p % bs)
                    dec_tables.append(bt[: p // bs + 1])
                    dec_lens.append(p + 1)
                continue
            ids.extend(s.token_ids[it.start : end])
            pos.extend(range(it.start, end))
            slots.extend(bt[p // bs] * bs + p % bs for p in range(it.start, end))
            if it.count == 1:
                dec_rows.append(begin)
                dec_tables.append(bt[: -(-end // bs)])
                dec_lens.append(end)
            else:
                nb = -(-end // bs)
                meta.prefills.append(PrefillSlice(begin, begin + it.count, it.start,
                                                  torch.tensor(bt[:nb], dtype=torch.long, device=dev)))
            if it.need_logits:
                rows.append(len(ids) - 1)
        if dec_rows and any(it.draft for it in items):
            lone = sum(1 for it in items if it.count == 1) == 1
            meta.decode_groups = self._decode_groups(dec_rows, dec_tables, dec_lens, lone)
        elif dec_rows:
            width = max(len(t) for t in dec_tables)
            meta.decode_rows = torch.tensor(dec_rows, device=dev)
            meta.decode_blocks = torch.tensor([t + [0] * (width - len(t)) for t in dec_tables], dtype=torch.long,
                                              device=dev)
            if any(n != width * bs for n in dec_lens):
                lens = torch.tensor(dec_lens, device=dev)
                meta.decode_mask = (torch.arange(width * bs, device=dev) < lens.unsqueeze(1))[:, None, None, :]
        meta.slots = torch.tensor(slots, dtype=torch.long, device=dev)
        return self.model.forward_batch(torch.tensor(ids, device=dev), torch.tensor(pos, device=dev), self.pool, meta,
                                        torch.tensor(rows, dtype=torch.long, device=dev))

    def _decode_groups(self, rows: list[int], tables: list[list[int]], lens: list[int],
                       lone: bool) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Attention calls for a verify step's decode rows, so that each row is computed as a plain decode
        step at its position computes it (greedy equality with plain decoding needs the last bit).

        Each row attends over exactly its own blocks: padding to a wider table changes the result. And
        torch's CPU SDPA splits a call's (row, head) pairs over its threads, and a pair computed on a
        worker thread gets other last bits than on the calling thread (measured on torch 2.13: see
        tests/engine/speculative/test_verify_attention.py), so a row's bits depend on the call's batch
        size. When the step holds one decoding sequence (`lone`), whose plain step is a batch of 1, each
        row gets a call of its own, the exact replica of that step; otherwise rows of one width share a
        call (a plain step of several sequences pads them to one width, so it is not reproducible)."""
        dev, bs = self.device, self.block_size
        if lone:
            calls = [[i] for i in range(len(rows))]
        else:
            by_width: dict[int, list[int]] = {}
            for i, t in enumerate(tables):
                by_width.setdefault(len(t), []).append(i)
            calls = list(by_width.values())
        groups = []
        shared: dict[int, torch.Tensor] = {}  # a lone sequence's rows of one width: one table, gathered once
        for idx in calls:
            width = len(tables[idx[0]])
            mask = None
            if any(lens[i] != width * bs for i in idx):
                n = torch.tensor([lens[i] for i in idx], device=dev)
                mask = (torch.arange(width * bs, device=dev) < n.unsqueeze(1))[:, None, None, :]
            if not lone:
                blocks = torch.tensor([tables[i] for i in idx], dtype=torch.long, device=dev)
            elif width not in shared:
                blocks = shared[width] = torch.tensor([tables[idx[0]]], dtype=torch.long, device=dev)
            else:
                blocks = shared[width]
            groups.append((torch.tensor([rows[i] for i in idx], device=dev), blocks, mask))
        return groups

    def free(self, seq: Sequence) -> None:
        seq.kv = None

    def save_kv(self, seq: Sequence, num_tokens: int) -> tuple[Any, int]:
        """A copy of the KV of the sequence's first `num_tokens` tokens (whole blocks) and its size."""
        saved = self.pool.copy_out(seq.block_table[: -(-num_tokens // self.block_size)])
        return saved, sum(t.numel() * t.element_size() for t in saved)

    def saved_nbytes(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size) * self.pool.nbytes() // self.num_blocks

    def restore_kv(self, seq: Sequence, saved: Any) -> None:
        """Write `save_kv`'s copy into the first blocks of the sequence's (new) block table."""
        self.pool.copy_in(seq.block_table[: saved[0].shape[1]], saved)

    def pool_nbytes(self) -> int:
        return self.pool.nbytes()

    @torch.inference_mode()
    def logits_for(self, token_ids: list[int], last: int | None = None) -> torch.Tensor:
        """All-position (or the `last` positions') logits of a fresh sequence, in a private scratch pool."""
        return self.model.logits_for(token_ids, self.block_size, self.pool.cache_type, last=last)


class HFRunner:
    """Fallback: any transformers causal LM, one forward per sequence with a DynamicCache."""

    kind = "transformers"
    supports_prefix_cache = False

    def __init__(self, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int, kv: KVOptions | None = None, prepare: PrepareModel | None = None) -> None:
        from transformers import AutoModelForCausalLM

        from agentkit.engine.models.kernels import dequantize_state_dict

        state_dict = dequantize_state_dict(state_dict, dtype)
        # Built on the real device (not meta) so non-persistent buffers such as rotary
        # frequencies are initialised by the model itself; weights are then replaced.
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, _ = model.load_state_dict(state_dict, strict=False, assign=True)
        missing = [m for m in missing if not m.endswith("lm_head.weight")]
        if missing:
            raise ValueError(f"checkpoint is missing weights: {missing[:5]}")
        if getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in state_dict:
            model.tie_weights()
        if prepare is not None:
            prepare(model)
        model.to(device=device, dtype=dtype)
        self.model = model.eval()
        self.vocab_size = config.vocab_size
        self.max_seq_len = max_seq_len
        self.device = device
        kv = kv or KVOptions()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        spec = KVSpec(config.num_hidden_layers, getattr(config, "num_key_value_heads", None)
                      or config.num_attention_heads, head_dim, dtype, device)
        self.block_size = kv.block_size
        self.num_blocks = kv.plan(spec, max_seq_len)  # budget accounting only: KV lives in DynamicCaches
        self._bytes_per_token = spec.bytes_per_token()

    @torch.inference_mode()
    def execute(self, items: list[BatchItem]) -> torch.Tensor:
        from transformers import DynamicCache

        out = []
        for it in items:
            s = it.seq
            if s.kv is None:
                s.kv = DynamicCache(config=self.model.config)
            ids = torch.tensor([s.token_ids[it.start : it.start + it.count]], device=self.device)
            pos = torch.arange(it.start, it.start + it.count, device=self.device)[None]
            res = self.model(input_ids=ids, cache=s.kv, use_cache=True, position_ids=pos, logits_to_keep=1)
            if it.need_logits:
                out.append(res.logits[0, -1])
        if not out:
            return torch.empty(0, self.vocab_size, device=self.device)
        return torch.stack(out)

    def free(self, seq: Sequence) -> None:
        seq.kv = None

    def save_kv(self, seq: Sequence, num_tokens: int) -> tuple[Any, int]:
        """The sequence's own DynamicCache is the copy (it is not shared with the pool)."""
        return seq.kv, num_tokens * self._bytes_per_token

    def saved_nbytes(self, num_tokens: int) -> int:
        return num_tokens * self._bytes_per_token

    def restore_kv(self, seq: Sequence, saved: Any) -> None:
        seq.kv = saved

    def pool_nbytes(self) -> int:
        return self.num_blocks * self.block_size * self._bytes_per_token

    @torch.inference_mode()
    def logits_for(self, token_ids: list[int], last: int | None = None) -> torch.Tensor:
        ids = torch.tensor([token_ids], device=self.device)
        return self.model(input_ids=ids, use_cache=False, logits_to_keep=last or 0).logits[0]


def build_runner(config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int, kv: KVOptions | None = None, prefer_native: bool = True,
                 weight_mode: str = "auto", prepare: PrepareModel | None = None,
                 placement: LayerPlacement | None = None) -> ModelRunner:
    """The native runner when the architecture is covered, else the transformers fallback.

    `weight_mode` (native only): "auto" keeps GGUF 4/8-bit blocks packed on CPU (dense for large
    batches), "dense", or "int8"/"int4" to quantize at load (in-situ quantization).
    `prepare(model)` runs once after the weights load, before quantization and KV sizing.
    `placement` (several stages) spreads the decoder layers over devices: native runner only.
    """
    if prefer_native and supports(config):
        return NativeRunner(config, state_dict, dtype, device, max_seq_len, kv, weight_mode, prepare, placement)
    if placement is not None and len(placement.stages) > 1:
        from agentkit.errors import NotSupportedError

        raise NotSupportedError(
            f"num_device_layers spreads the layers over several devices ({placement.counts()}), which only the "
            f"native engine does (llama, mistral, qwen2, qwen3 with paged attention); {config.model_type} runs "
            "on the transformers fallback: give all layers to one device (e.g. [\"500\"]) or pass device=")
    return HFRunner(config, state_dict, dtype, device, max_seq_len, kv, prepare)
