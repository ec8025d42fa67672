"""Tokenizer wrapper: load a tokenizer (HF dir, tokenizer.json or GGUF) and detokenize incrementally.

Scope: `Tokenizer` wraps a transformers fast tokenizer with the few operations the engine needs
(encode/decode, special and EOS ids, per-token strings); `load_tokenizer` builds one from a model
directory, an explicit tokenizer.json or a GGUF file (the GGUF conversion is cached on disk under
`$AGENTKIT_CACHE/tokenizers/`); `IncrementalDetokenizer` turns a stream of token ids into text deltas
with the prefix-offset technique of vLLM/TGI, and finds stop strings in that text (holding back a
possible stop-string prefix from the deltas, like vLLM v1's `BaseIncrementalDetokenizer.update`).

Non-goals: chat templates (see agentkit.engine.chat_template), slow/sentencepiece-only tokenizers
beyond what AutoTokenizer gives, hub downloads. transformers is imported lazily inside functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["IncrementalDetokenizer", "Tokenizer", "cache_root", "load_tokenizer"]

_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


class Tokenizer:
    """A transformers fast tokenizer (`hf`) with the engine's view of special and EOS tokens."""

    def __init__(self, hf: Any, *, extra_eos_ids: Iterable[int] = ()) -> None:
        self.hf = hf
        self._raw = getattr(hf, "backend_tokenizer", None)
        if getattr(hf, "clean_up_tokenization_spaces", False):
            self._raw = None  # hf.decode post-processes: always go through it
        self._token_strings: list[str] | None = None
        eos = {int(i) for i in extra_eos_ids}
        if hf.eos_token_id is not None:
            eos.add(int(hf.eos_token_id))
        self.eos_token_ids: set[int] = eos
        special = {int(i) for i in hf.all_special_ids}
        for idx, added in getattr(hf, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                special.add(int(idx))
        self.special_ids: set[int] = special
        self.grammar_state: Any = None
        """What `agentkit.engine.grammar` builds once for this tokenizer (llguidance's tokenizer,
        compiled grammars); None until the first constrained request. Lives and dies with it."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text` (no BOS/EOS unless `add_special_tokens`)."""
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`, identical to `hf.decode(ids, skip_special_tokens=...)`."""
        if self._raw is not None:
            return self._raw.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (`len(hf)`)."""
        return len(self.hf)

    @property
    def bos_token(self) -> str | None:
        return self.hf.bos_token

    @property
    def eos_token(self) -> str | None:
        return self.hf.eos_token

    @property
    def unk_token(self) -> str | None:
        return self.hf.unk_token

    def special_tokens_map(self) -> dict[str, str | None]:
        """bos/eos/unk/pad token strings (None when absent), as the chat template receives them."""
        return {key: getattr(self.hf, key, None) for key in _TOKEN_KEYS}

    def token_strings(self) -> list[str]:
        """Decoded text of every id (special tokens as their text), computed once and cached.

        Partial UTF-8 byte tokens decode to U+FFFD. A SentencePiece piece starting with "▁" keeps
        its leading space, which decoding it alone would strip.
        """
        if self._token_strings is None:
            n = self.vocab_size
            singles = [[i] for i in range(n)]
            if self._raw is not None:
                texts = list(self._raw.decode_batch(singles, skip_special_tokens=False))
            else:
                texts = [self.hf.decode(s, skip_special_tokens=False) for s in singles]
            pieces = self.hf.convert_ids_to_tokens(list(range(n)))
            for i, piece in enumerate(pieces):
                if isinstance(piece, str) and piece.startswith("\u2581") and not texts[i].startswith(" "):
                    texts[i] = " " + texts[i]
            self._token_strings = texts
        return self._token_strings

    def __repr__(self) -> str:
        return f"Tokenizer({type(self.hf).__name__}, vocab={self.vocab_size}, eos={sorted(self.eos_token_ids)})"


def cache_root() -> str:
    """agentkit's cache directory: `$AGENTKIT_CACHE`, default `~/.cache/agentkit`."""
    return os.environ.get("AGENTKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "agentkit")


def _gguf_cache_dir(path: str) -> str:
    st = os.stat(path)
    key = json.dumps([os.path.abspath(path), st.st_size, st.st_mtime_ns])
    return os.path.join(cache_root(), "tokenizers", hashlib.sha256(key.encode()).hexdigest())


def _from_gguf(gguf_path: str) -> Any:
    """AutoTokenizer from a GGUF file, converted once (~4 s) and then reloaded from the disk cache."""
    from transformers import AutoTokenizer

    cached = _gguf_cache_dir(gguf_path)
    if os.path.isfile(os.path.join(cached, "tokenizer.json")):
        try:
            return AutoTokenizer.from_pretrained(cached)
        except (OSError, ValueError):
            shutil.rmtree(cached, ignore_errors=True)  # corrupt cache entry: rebuild it
    from agentkit.engine.loading.gguf_check import check_gguf_file

    check_gguf_file(gguf_path)  # transformers' GGUF reader trusts declared sizes
    directory, name = os.path.split(os.path.abspath(gguf_path))
    try:
        hf = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot read a tokenizer from GGUF file {gguf_path!r}: {e}") from e
    parent = os.path.dirname(cached)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            hf.save_pretrained(tmp)
            os.replace(tmp, cached)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or disk trouble
    except OSError:
        pass  # an unwritable cache only costs speed
    return hf


def special_token_text(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict with 'content'."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _from_tokenizer_json(path: str, config_dir: str) -> Any:
    """A fast tokenizer from a tokenizer.json, with special tokens from `config_dir`/tokenizer_config.json."""
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {}
    cfg_path = os.path.join(config_dir, "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        kwargs = {k: special_token_text(cfg.get(k)) for k in _TOKEN_KEYS if special_token_text(cfg.get(k))}
        if isinstance(cfg.get("chat_template"), str):
            kwargs["chat_template"] = cfg["chat_template"]
    try:
        return PreTrainedTokenizerFast(tokenizer_file=path, **kwargs)
    except Exception as e:  # tokenizers raises plain Exception on a malformed file
        raise ValueError(f"cannot load tokenizer file {path!r}: {e}") from e


def _config_eos_ids(model_dir: str) -> set[int]:
    """EOS ids listed in a model dir's generation_config.json / config.json (int or list)."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                value = json.load(f).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        values = value if isinstance(value, list) else [value]
        ids.update(int(v) for v in values if isinstance(v, int))
    return ids


def load_tokenizer(
    model_dir: str | None,
    *,
    gguf_path: str | None = None,
    tokenizer_json: str | None = None,
    extra_eos_ids: Iterable[int] = (),
) -> Tokenizer:
    """Load the tokenizer: explicit `tokenizer_json` > `model_dir` with tokenizer files > `gguf_path`.

    EOS ids are the tokenizer's EOS, those in `model_dir`'s generation_config.json/config.json, and
    `extra_eos_ids`. Missing files raise ValueError naming the path.
    """
    eos = {int(i) for i in extra_eos_ids}
    if model_dir is not None and not os.path.isdir(model_dir):
        raise ValueError(
            f"no such model directory: {model_dir!r}; pass a local directory holding tokenizer.json "
            "(or tokenizer_config.json), or gguf_path=<file.gguf>"
        )
    if model_dir is not None:
        eos |= _config_eos_ids(model_dir)
    if tokenizer_json is not None:
        if not os.path.isfile(tokenizer_json):
            raise ValueError(f"tokenizer file {tokenizer_json!r} does not exist; pass the path of a tokenizer.json")
        config_dir = model_dir or os.path.dirname(os.path.abspath(tokenizer_json))
        return Tokenizer(_from_tokenizer_json(tokenizer_json, config_dir), extra_eos_ids=eos)
    has_files = model_dir is not None and any(
        os.path.isfile(os.path.join(model_dir, n)) for n in ("tokenizer.json", "tokenizer_config.json")
    )
    if has_files:
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load the tokenizer in {model_dir!r}: {e}") from e
        return Tokenizer(hf, extra_eos_ids=eos)
    if gguf_path is not None:
        if not os.path.isfile(gguf_path):
            raise ValueError(f"GGUF file {gguf_path!r} does not exist; pass the path of a .gguf model file")
        return Tokenizer(_from_gguf(gguf_path), extra_eos_ids=eos)
    if model_dir is None:
        raise ValueError("load_tokenizer needs model_dir, gguf_path or tokenizer_json; none was given")
    raise ValueError(
        f"model directory {model_dir!r} has no tokenizer.json or tokenizer_config.json; pass "
        "tokenizer_json=<path> or gguf_path=<file.gguf>"
    )


class IncrementalDetokenizer:
    """Stream token ids to text deltas without re-decoding the whole sequence (vLLM/TGI prefix offsets).

    Each `push` decodes only `ids[prefix_offset:]` and `ids[prefix_offset:read_offset]` (the last
    emitted tokens give the context that byte-level BPE and SentencePiece spaces need) and returns
    the new text, holding it back while it ends in an incomplete UTF-8 sequence (U+FFFD).
    `prompt_ids` optionally seeds that context so the first generated token keeps a leading space.

    Stop strings (`stop`): `update` pushes a token and reports the first stop string found in the
    text not yet emitted; `take_delta` hands out the text since the last call, holding back a tail
    that could still become a stop string and cutting the text where the stop string begins.
    """

    def __init__(
        self, tokenizer: Tokenizer, *, skip_special_tokens: bool = True, prompt_ids: Sequence[int] = (),
        stop: Sequence[str] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = [int(i) for i in prompt_ids[-6:]]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self._parts: list[str] = []
        self.stop: tuple[str, ...] = tuple(stop)
        self._longest_stop = max((len(x) for x in self.stop), default=0)
        self.stop_sequence: str | None = None  # the stop string found by `update`
        self._stop_cut: int | None = None  # where it begins in `text`
        self.emitted_chars = 0  # characters of `text` handed out by `take_delta`

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text ("" while a character is incomplete)."""
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            self._parts.append(delta)
            return delta
        return ""

    def flush(self) -> str:
        """Return any held-back text (an incomplete character decodes as U+FFFD) and reset the hold."""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text):
            return ""
        delta = new_text[len(prefix_text) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        self._parts.append(delta)
        return delta

    @property
    def text(self) -> str:
        """All text emitted so far (deltas and flushes)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def update(self, token_id: int) -> str | None:
        """Push one generated token; return the stop string now found in the text (the earliest
        one, searched from just before the text already emitted) or None. The text ends there."""
        self.push(token_id)
        if not self.stop:
            return None
        text = self.text
        begin = max(0, self.emitted_chars - self._longest_stop + 1)
        best: tuple[int, str] | None = None
        for stop in self.stop:
            idx = text.find(stop, begin)
            if idx >= 0 and (best is None or idx < best[0]):
                best = (idx, stop)
        if best is None:
            return None
        self._stop_cut, self.stop_sequence = best
        return self.stop_sequence

    def take_delta(self, finished: bool) -> str:
        """The text since the last call. Unfinished: a tail that may begin a stop string is held
        back. Finished: everything up to the stop string found, else everything (held bytes flushed)."""
        if finished:
            if self.stop_sequence is not None:
                end = self._stop_cut if self._stop_cut is not None else len(self.text)
            else:
                self.flush()
                end = len(self.text)
        else:
            text = self.text
            end = len(text)
            for stop in self.stop:
                for k in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:k]):
                        end = min(end, len(text) - k)
                        break
        full = self.text
        end = max(end, self.emitted_chars)
        delta = full[self.emitted_chars:end]
        self.emitted_chars = end
        return delta
