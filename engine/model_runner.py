"""Model runners: turn a scheduled batch into logits, owning each sequence's KV state.

`NativeRunner` drives the native Llama-family model on a flattened varlen batch (one forward
per engine step for every prefill chunk and decode token). `HFRunner` is the fallback for every
other transformers architecture: same interface, one forward per sequence with a
transformers `DynamicCache`. Both take HF-named weights already in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agentkit.engine.llama import AttnSeq, LlamaModel, supports
from agentkit.engine.sequence import Sequence


@dataclass(slots=True)
class BatchItem:
    """Feed `seq.token_ids[start:start+count]`; `need_logits` if this chunk ends the known tokens."""

    seq: Sequence
    start: int
    count: int
    need_logits: bool


class ModelRunner(Protocol):
    """What the engine needs from a model: batched execution and KV ownership."""

    vocab_size: int
    max_seq_len: int
    device: torch.device
    kind: str

    def execute(self, items: list[BatchItem]) -> torch.Tensor:
        """Run the batch; return logits `[sum(need_logits), V]` in item order."""
        ...

    def free(self, seq: Sequence) -> None:
        """Drop the sequence's KV state."""
        ...

    def logits_for(self, token_ids: list[int]) -> torch.Tensor:
        """Logits `[T, V]` for every position of a fresh sequence (parity tests, scoring)."""
        ...


class NativeRunner:
    """Runs `LlamaModel` over flattened batches with per-sequence contiguous KV caches."""

    kind = "native"

    def __init__(self, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int) -> None:
        self.model = LlamaModel(config, dtype, device)
        self.model.load_hf_state_dict(state_dict)
        self.model.eval()
        self.vocab_size = config.vocab_size
        self.max_seq_len = max_seq_len
        self.device = device

    def execute(self, items: list[BatchItem]) -> torch.Tensor:
        from agentkit.engine.kv_cache import SeqKV

        ids: list[int] = []
        pos: list[int] = []
        seqs: list[AttnSeq] = []
        rows: list[int] = []
        for it in items:
            s = it.seq
            if s.kv is None:
                s.kv = SeqKV(self.model.kv_spec, capacity=it.start + it.count + 64)
            s.kv.reserve(it.start + it.count)
            begin = len(ids)
            ids.extend(s.token_ids[it.start : it.start + it.count])
            pos.extend(range(it.start, it.start + it.count))
            seqs.append(AttnSeq(begin, len(ids), it.start, s.kv))
            if it.need_logits:
                rows.append(len(ids) - 1)
        dev = self.device
        logits = self.model.forward_batch(
            torch.tensor(ids, device=dev), torch.tensor(pos, device=dev), seqs, torch.tensor(rows, device=dev)
        )
        for it in items:
            it.seq.kv.length = it.start + it.count
        return logits

    def free(self, seq: Sequence) -> None:
        seq.kv = None

    @torch.inference_mode()
    def logits_for(self, token_ids: list[int]) -> torch.Tensor:
        from agentkit.engine.kv_cache import SeqKV

        kv = SeqKV(self.model.kv_spec, capacity=len(token_ids))
        n = len(token_ids)
        dev = self.device
        return self.model.forward_batch(
            torch.tensor(token_ids, device=dev), torch.arange(n, device=dev), [AttnSeq(0, n, 0, kv)],
            torch.arange(n, device=dev),
        )


class HFRunner:
    """Fallback: any transformers causal LM, one forward per sequence with a DynamicCache."""

    kind = "transformers"

    def __init__(self, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int) -> None:
        from transformers import AutoModelForCausalLM

        # Built on the real device (not meta) so non-persistent buffers such as rotary
        # frequencies are initialised by the model itself; weights are then replaced.
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, _ = model.load_state_dict(state_dict, strict=False, assign=True)
        missing = [m for m in missing if not m.endswith("lm_head.weight")]
        if missing:
            raise ValueError(f"checkpoint is missing weights: {missing[:5]}")
        if getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in state_dict:
            model.tie_weights()
        model.to(device=device, dtype=dtype)
        self.model = model.eval()
        self.vocab_size = config.vocab_size
        self.max_seq_len = max_seq_len
        self.device = device

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

    @torch.inference_mode()
    def logits_for(self, token_ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([token_ids], device=self.device)
        return self.model(input_ids=ids, use_cache=False).logits[0]


def build_runner(config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device,
                 max_seq_len: int, prefer_native: bool = True) -> ModelRunner:
    """The native runner when the architecture is covered, else the transformers fallback."""
    if prefer_native and supports(config):
        return NativeRunner(config, state_dict, dtype, device, max_seq_len)
    return HFRunner(config, state_dict, dtype, device, max_seq_len)
