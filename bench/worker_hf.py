"""The HF transformers engine of bench/workers.py: fp32 `generate` on the dequantized GGUF weights.

Scope: `HfEngine`, answering the worker commands (`stream`, `batch` as one left-padded batch,
`conversation`, `tokenize`, `info`) with the same fields as `ApiEngine`. Non-goals: the protocol
(bench/workers.py), sampling, quantized execution.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from worker_common import batch_summary, error_text, perf


# ---- HF transformers (fp32, dequantized GGUF) -----------------------------------------------------
class HfEngine:
    """transformers `generate` on the dequantized GGUF weights, fp32, greedy."""

    def __init__(self, gguf: tuple[str, str], args: argparse.Namespace) -> None:
        self.engine = "hf"
        t0 = perf()
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.generation.streamers import BaseStreamer

        self.torch, self.transformers, self.BaseStreamer = torch, transformers, BaseStreamer
        if args.threads:
            torch.set_num_threads(args.threads)
        self.import_s = perf() - t0
        directory, filename = gguf
        t0 = perf()
        self.tok = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
        self.tokenizer_s = perf() - t0
        t0 = perf()
        try:
            model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
            self.load_path = "AutoModelForCausalLM.from_pretrained(gguf_file=...)"
        except ValueError as exc:  # transformers wants `accelerate` for GGUF; load the tensors ourselves
            if "accelerate" not in str(exc):
                raise
            from transformers import AutoConfig
            from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

            config = AutoConfig.from_pretrained(directory, gguf_file=filename)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            parsed = load_gguf_checkpoint(os.path.join(directory, filename), return_tensors=True,
                                          model_to_load=model)
            missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False)
            model.tie_weights()
            bad = [k for k in missing if k != "lm_head.weight"] + list(unexpected)
            if bad:
                raise RuntimeError(f"GGUF state dict does not match the model: {bad[:5]}") from exc
            self.load_path = "from_config + modeling_gguf_pytorch_utils.load_gguf_checkpoint (no accelerate)"
        self.model = model.to(torch.float32).eval()
        self.load_s = perf() - t0 + self.tokenizer_s
        self.eos = self.tok.convert_tokens_to_ids("<|im_end|>")
        self.threads = args.threads

    def info(self) -> dict[str, Any]:
        return {"engine": "hf", "torch": self.torch.__version__, "torch_threads": self.torch.get_num_threads(),
                "transformers": self.transformers.__version__, "dtype": "float32", "load_path": self.load_path,
                "tokenizer_s": self.tokenizer_s,
                "params": sum(p.numel() for p in self.model.parameters())}

    def _ids(self, messages: list[dict[str, str]]) -> list[int]:
        enc = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = enc["input_ids"] if isinstance(enc, dict) or hasattr(enc, "keys") else enc
        return list(ids)

    def _clock(self) -> Any:
        base = self.BaseStreamer

        class Clock(base):  # records the arrival time of every generated token
            def __init__(self) -> None:
                self.times: list[float] = []
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                self.times.append(perf())

            def end(self) -> None:
                pass

        return Clock()

    def _generate(self, ids: list[int], max_tokens: int, ignore_eos: bool, streamer: Any = None) -> list[int]:
        torch = self.torch
        input_ids = torch.tensor([ids])
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": False, "pad_token_id": self.eos,
                                  "eos_token_id": self.eos}
        if ignore_eos:
            kwargs["min_new_tokens"] = max_tokens
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      streamer=streamer, **kwargs)
        return out[0, len(ids):].tolist()

    def stream(self, messages: list[dict[str, str]], max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
        t0 = perf()
        ids = self._ids(messages)
        clock = self._clock()
        new = self._generate(ids, max_tokens, ignore_eos, streamer=clock)
        end = perf()
        times = clock.times
        n = len(new)
        res: dict[str, Any] = {"prompt_tokens": len(ids), "completion_tokens": n, "cached_tokens": None,
                               "finish_reason": "stop" if new and new[-1] == self.eos else "length",
                               "total_s": end - t0,
                               "text": self.tok.decode(new, skip_special_tokens=True)}
        if times:
            res["ttft_s"] = times[0] - t0
            res["decode_tok_s"] = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
            res["e2e_tok_s"] = n / (end - t0)
        return res

    def batch(self, conversations: list[list[dict[str, str]]], max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
        """One left-padded batch through `generate` (HF has no request scheduler)."""
        torch = self.torch
        t0 = perf()
        try:
            rows = [self._ids(m) for m in conversations]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([[self.eos] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": False, "pad_token_id": self.eos,
                                      "eos_token_id": self.eos}
            if ignore_eos:
                kwargs["min_new_tokens"] = max_tokens
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
            wall = perf() - t0
            results: list[dict[str, Any] | None] = []
            for i, r in enumerate(rows):
                new = out[i, width:].tolist()
                if not ignore_eos and self.eos in new:
                    new = new[: new.index(self.eos) + 1]
                results.append({"prompt_tokens": len(r), "completion_tokens": len(new), "total_s": wall})
        except Exception as exc:  # the whole batch failed
            wall = perf() - t0
            results = [{"error": error_text(exc)} for _ in conversations]
        return batch_summary(results, wall, max_tokens, ignore_eos)

    def tokenize(self, texts: list[str]) -> list[int]:
        return [len(self.tok.encode(t, add_special_tokens=False)) for t in texts]

    def close(self) -> None:
        pass
