"""Sentence-embedding models: load an encoder from a local directory and embed texts or token ids.

Scope: `EmbeddingModel` loads a sentence-transformers directory (``modules.json`` with Transformer,
Pooling, Dense and Normalize modules, ``1_Pooling/config.json``, ``sentence_bert_config.json``) or
a plain transformers directory (then mean pooling + L2 normalisation), resolving hub ids from the
local HF cache only (`agentkit.engine.loading.hub`). Weights are read from safetensors only.
`EmbeddingModel.embed` batches inputs with an attention mask under `torch.inference_mode()` and
applies mistral.rs' truncation rule (an over-long input is an error unless truncation is asked
for; truncation keeps the start). This is what `Which.Embedding` / `send_embedding_request` run.

Non-goals: downloading models, pickle checkpoints (``pytorch_model.bin`` is refused), prompt
templates from ``config_sentence_transformers.json`` (callers prepend prompts themselves, as
with mistral.rs), sentence-transformers modules other than the four above (Router,
StaticEmbedding, CNN, LSTM, ... raise NotSupportedError), ISQ/UQFF quantisation, training.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import torch

from agentkit.engine.embedding_modules import (
    DEFAULT_BATCH_SIZE,
    OFFSET_POSITIONS,
    Dense,
    PoolingConfig,
    load_dense,
    module_kind,
    parse_pooling,
    pool,
    require_safetensors,
)
from agentkit.engine.loading.hub import read_json, resolve_model_dir
from agentkit.errors import EngineError, ModelLoadError, NotSupportedError, RequestError

__all__ = ["EmbeddingModel", "PoolingConfig"]

@contextlib.contextmanager
def _transformers_progress(enabled: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if was and not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()


class EmbeddingModel:
    """A sentence-embedding encoder loaded from a local directory (sentence-transformers layout or plain HF).

    Attributes: `model_id` (as given), `model_dir` (resolved directory), `max_seq_len` (longest
    input in tokens, special tokens included), `dim` (vector length), `tokenizer` (the
    transformers fast tokenizer), `pooling`, `normalize`, `dtype`, `device`, `vocab_size`.
    Build with `EmbeddingModel.load`.
    """

    def __init__(
        self,
        *,
        model_id: str,
        model_dir: str,
        model: Any,
        tokenizer: Any,
        max_seq_len: int,
        pooling: PoolingConfig,
        dense: list[Dense],
        normalize: bool,
        do_lower_case: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model_id = model_id
        self.model_dir = model_dir
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_len = int(max_seq_len)
        self.pooling = pooling
        self.normalize = normalize
        self.do_lower_case = do_lower_case
        self.batch_size = batch_size
        param = next(model.parameters())
        self.device: torch.device = param.device
        self.dtype: torch.dtype = param.dtype
        self._dense = [
            Dense(d.weight.to(self.device), None if d.bias is None else d.bias.to(self.device), d.activation)
            for d in dense
        ]
        self.vocab_size = int(model.get_input_embeddings().num_embeddings)
        pad = getattr(tokenizer, "pad_token_id", None)
        self._pad_id = int(pad) if isinstance(pad, int) and 0 <= pad < self.vocab_size else 0
        hidden = int(model.config.hidden_size)
        dim = hidden * len(pooling.modes)
        for i, d in enumerate(self._dense):
            if d.weight.shape[1] != dim:
                raise ModelLoadError(
                    f"{model_dir}: Dense module {i} expects {d.weight.shape[1]} features but the pooled vector has {dim}"
                )
            dim = int(d.weight.shape[0])
        self.dim = dim

    def __repr__(self) -> str:
        return (
            f"EmbeddingModel(model_id={self.model_id!r}, dim={self.dim}, max_seq_len={self.max_seq_len},"
            f" pooling={'+'.join(self.pooling.modes)}, normalize={self.normalize}, dtype={self.dtype},"
            f" device={self.device})"
        )

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        model_id: str,
        *,
        dtype: torch.dtype | str = "auto",
        device: torch.device | str = "cpu",
        hf_cache_path: str | None = None,
        token: str | None = None,
        tokenizer_json: str | None = None,
        progress: bool = True,
    ) -> EmbeddingModel:
        """Load `model_id` (a local directory or a hub id already in the HF cache) onto `device`.

        `dtype` is a torch dtype or a `ModelDType` name (``auto``, ``bf16``, ``f16``, ``f32``;
        ``auto`` is float32 on CPU). `tokenizer_json` overrides the directory's tokenizer.
        Raises ModelNotFoundError when the model is not local, ModelLoadError for pickle-only or
        malformed directories, NotSupportedError for sentence-transformers modules not implemented.
        """
        from agentkit.engine.loading.loader import resolve_dtype
        from agentkit.engine.tokenizer import load_tokenizer

        device = torch.device(device)
        if not isinstance(dtype, torch.dtype):
            dtype = resolve_dtype(dtype, device)
        model_dir = resolve_model_dir(model_id, hf_cache_path=hf_cache_path, token=token)

        # Module layout: sentence-transformers modules.json, else a plain transformers encoder.
        transformer_dir = model_dir
        pooling = PoolingConfig(("mean_tokens",))
        dense: list[Dense] = []
        normalize = True
        modules_path = os.path.join(model_dir, "modules.json")
        if os.path.isfile(modules_path):
            entries = read_json(modules_path, error=ModelLoadError)
            if not isinstance(entries, list) or not entries:
                raise ModelLoadError(f"{modules_path} must be a non-empty JSON list of modules")
            entries = sorted(entries, key=lambda e: e.get("idx", 0) if isinstance(e, dict) else 0)
            kinds = [module_kind(e, modules_path) for e in entries]
            if kinds[0] != "Transformer" or kinds.count("Transformer") != 1:
                raise NotSupportedError(
                    f"{modules_path}: expected exactly one Transformer module, first; got {kinds}"
                )
            if kinds.count("Pooling") > 1:
                raise NotSupportedError(f"{modules_path}: more than one Pooling module ({kinds})")
            normalize = False
            pooled = False
            for entry, kind in zip(entries, kinds):
                sub = os.path.join(model_dir, str(entry.get("path") or ""))
                if kind == "Transformer":
                    transformer_dir = sub
                elif kind == "Pooling":
                    if normalize or dense:
                        raise NotSupportedError(f"{modules_path}: Pooling must come right after Transformer")
                    pooling = parse_pooling(os.path.join(sub, "config.json"))
                    pooled = True
                elif kind == "Dense":
                    if not pooled or normalize:
                        raise NotSupportedError(
                            f"{modules_path}: Dense is supported only after Pooling and before Normalize"
                        )
                    dense.append(load_dense(sub))
                else:  # Normalize
                    normalize = True
            if not pooled:
                raise NotSupportedError(
                    f"{modules_path}: no Pooling module; token-level embeddings are not supported"
                )

        require_safetensors(transformer_dir)
        if not os.path.isfile(os.path.join(transformer_dir, "config.json")):
            raise ModelLoadError(f"{transformer_dir} has no config.json, so it is not a transformers model directory")

        st_cfg_path = os.path.join(transformer_dir, "sentence_bert_config.json")
        st_cfg = read_json(st_cfg_path, error=ModelLoadError) if os.path.isfile(st_cfg_path) else {}
        st_cfg = st_cfg if isinstance(st_cfg, dict) else {}

        from transformers import AutoModel

        try:
            with _transformers_progress(progress):
                model, info = AutoModel.from_pretrained(
                    transformer_dir,
                    use_safetensors=True,
                    local_files_only=True,
                    dtype=dtype,
                    output_loading_info=True,
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"could not load the encoder in {transformer_dir}: {exc}") from exc
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
        if missing:
            raise ModelLoadError(
                f"{transformer_dir}: the checkpoint lacks {len(missing)} encoder weights (e.g. {missing[:3]});"
                " it does not match its config.json"
            )
        model = model.to(device).eval()

        tokenizer = load_tokenizer(transformer_dir, tokenizer_json=tokenizer_json).hf

        config = model.config
        limits = []
        if isinstance(st_cfg.get("max_seq_length"), int) and st_cfg["max_seq_length"] > 0:
            limits.append(int(st_cfg["max_seq_length"]))
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limits.append(tok_max)
        max_pos = getattr(config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and max_pos > 0:
            limits.append(max_pos - 2 if config.model_type in OFFSET_POSITIONS else max_pos)
        if not limits:
            raise ModelLoadError(f"{transformer_dir}: cannot tell the maximum sequence length")

        return cls(
            model_id=model_id,
            model_dir=model_dir,
            model=model,
            tokenizer=tokenizer,
            max_seq_len=min(limits),
            pooling=pooling,
            dense=dense,
            normalize=normalize,
            do_lower_case=bool(st_cfg.get("do_lower_case", False)),
        )

    # ------------------------------------------------------------------ inference

    def _too_long(self, index: int, length: int) -> RequestError:
        return RequestError(
            f"Embedding input sequence length is greater than {self.max_seq_len} (input {index} has {length}"
            " tokens), perhaps consider using `truncate_sequence`?"
        )

    def _token_ids(self, inputs: list[str] | list[list[int]], truncate: bool) -> list[list[int]]:
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError("embedding inputs must be a non-empty list of strings or of token-id lists")
        if all(isinstance(x, str) for x in inputs):
            texts = [x.lower() for x in inputs] if self.do_lower_case else list(inputs)
            kwargs: dict[str, Any] = {"truncation": False}
            if truncate:
                kwargs = {"truncation": True, "max_length": self.max_seq_len}
            ids = self.tokenizer(texts, add_special_tokens=True, verbose=False, **kwargs)["input_ids"]
            ids = [list(x) for x in ids]
        elif all(isinstance(x, (list, tuple)) for x in inputs):
            ids = []
            for i, seq in enumerate(inputs):
                if not all(isinstance(t, int) and not isinstance(t, bool) for t in seq):
                    raise TypeError(f"embedding input {i} must be a list of int token ids")
                bad = sorted({t for t in seq if t < 0 or t >= self.vocab_size})
                if bad:
                    raise RequestError(
                        f"embedding input {i} has token ids {bad[:10]} outside the model's vocabulary"
                        f" (0..{self.vocab_size - 1})"
                    )
                ids.append(list(seq[: self.max_seq_len]) if truncate else list(seq))
        else:
            raise TypeError("embedding inputs must be all strings or all token-id lists")
        for i, seq in enumerate(ids):
            if not seq:
                raise RequestError(f"embedding input {i} encodes to no tokens; it cannot be embedded")
            if len(seq) > self.max_seq_len:
                raise self._too_long(i, len(seq))
        return ids

    def _forward(self, batch: list[list[int]]) -> torch.Tensor:
        width = max(len(s) for s in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        input_ids = input_ids.to(self.device)
        mask = mask.to(self.device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        vec = pool(hidden, mask, self.pooling.modes)
        for d in self._dense:
            vec = d.activation(torch.nn.functional.linear(vec, d.weight, d.bias))
        if self.normalize:
            vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
        return vec.cpu()

    def embed(self, inputs: list[str] | list[list[int]], *, truncate: bool) -> list[list[float]]:
        """One embedding (python floats, length `dim`) per input, in input order.

        Texts are tokenized with the model's special tokens; token-id lists are used as given.
        An input longer than `max_seq_len` tokens raises RequestError (a ValueError) unless
        `truncate` is true, which keeps its first `max_seq_len` tokens (texts keep their
        special tokens). Token ids outside the vocabulary raise RequestError naming them.
        """
        if not isinstance(truncate, bool):
            raise TypeError(f"truncate must be a bool, got {truncate!r}")
        ids = self._token_ids(inputs, truncate)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)  # less padding
        result: list[list[float] | None] = [None] * len(ids)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                vecs = self._forward([ids[i] for i in chunk]).tolist()
                for i, vec in zip(chunk, vecs):
                    if not all(math.isfinite(v) for v in vec):
                        raise EngineError(
                            f"embedding of input {i} is not finite; try dtype='f32' (current {self.dtype})"
                        )
                    result[i] = vec
        return result  # type: ignore[return-value]
