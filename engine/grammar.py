"""Grammar-constrained decoding with llguidance: compile grammars, per-sequence matchers, token masks.

Scope: `grammar_tokenizer` builds llguidance's token table once per `Tokenizer` (EOS = the model's
EOS ids); `compile_grammar` turns a regex, a Lark grammar (llguidance's dialect, inline
``%json {...}`` schemas included), a JSON schema or an llguidance top-level grammar into a
validated, reusable `Grammar` in the caller's thread (bad grammars raise ValueError there);
`Grammar.new_matcher` gives each sequence its own `GrammarMatcher`. `compute_masks` fills the
allowed-token masks of a batch of matchers and `MaskWorker` runs it on a background thread so
the engine can overlap it with the model forward (llguidance releases the GIL).

Semantics: EOS is allowed only while the grammar is accepting (llguidance masks it otherwise, so
a greedy top EOS never errors); a stopped matcher (grammar complete) allows nothing but EOS and
the engine ends its sequence instead of sampling. Matchers advance only through `consume`.

Added tokens: llguidance 1.9 treats every added token as special, and when a plain literal
such as ``"<tool_call>"`` is forced it allows only the added token of that text, then fails to
consume it ("token doesn't satisfy the grammar; forced bytes"). Here an added token that is not
special (``<tool_call>``, ``<think>`` in Qwen tokenizers) is text, as in the detokenized output:
it is allowed wherever its text is and consumed as its text when llguidance rejects it as a
token. A special one (``<|im_end|>``) is not text: where llguidance wrongly allows it, the mask
offers its text spelling instead. llguidance's ``<tool_call>`` special-token syntax keeps working.

Non-goals: applying masks to logits (``SampleRow.allowed_token_mask`` in
agentkit.engine.sampling), fast-forward tokens, speculative decoding (draft-token masks), GBNF.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agentkit.engine.tokenizer import Tokenizer

__all__ = ["GRAMMAR_TYPES", "Grammar", "GrammarMatcher", "compile_grammar", "grammar_tokenizer", "unpack_bitmask"]

log = logging.getLogger("agentkit.engine.grammar")

GRAMMAR_TYPES = ("regex", "lark", "json_schema", "llguidance")

_COMPILED_CACHE_SIZE = 64
_lock = threading.Lock()


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ValueError("constrained decoding needs the llguidance package: pip install llguidance") from e
    return llguidance


def grammar_tokenizer(tokenizer: Tokenizer) -> Any:
    """llguidance's `LLTokenizer` for `tokenizer`, built once (~0.5 s for a 49k vocab) and cached on it.

    Uses ``llguidance.hf.from_tokenizer`` on the wrapped fast tokenizer; EOS is every id in
    ``tokenizer.eos_token_ids`` (the model's EOS ids). Raises ValueError for a tokenizer without
    a `tokenizers` backend or without an EOS token.
    """
    return _state(tokenizer).llt


@dataclass(slots=True)
class _TokenizerState:
    """`Tokenizer.grammar_state`: llguidance's tokenizer, the added tokens' spellings, compiled grammars."""

    llt: Any
    added: _AddedTokens | None
    compiled: OrderedDict = field(default_factory=OrderedDict)


def _state(tokenizer: Tokenizer) -> _TokenizerState:
    state = tokenizer.grammar_state
    if state is not None:
        return state
    with _lock:
        if tokenizer.grammar_state is not None:
            return tokenizer.grammar_state
        _llguidance()
        import llguidance.hf
        from transformers import PreTrainedTokenizerFast

        hf = tokenizer.hf
        if not isinstance(hf, PreTrainedTokenizerFast):
            backend = getattr(hf, "backend_tokenizer", None)
            if backend is None:
                raise ValueError(
                    f"constrained decoding needs a fast (tokenizers) tokenizer; {type(hf).__name__} has none. "
                    "Load the model with a tokenizer.json"
                )
            hf = PreTrainedTokenizerFast(tokenizer_object=backend)
        eos = sorted(tokenizer.eos_token_ids)
        if not eos:
            raise ValueError("constrained decoding needs the model's EOS token id, and this tokenizer has none")
        llt = llguidance.hf.from_tokenizer(hf, eos_token=eos)
        tokenizer.grammar_state = state = _TokenizerState(llt, _added_tokens(tokenizer, llt))
        return state


@dataclass(frozen=True, slots=True)
class _AddedTokens:
    """Added tokens and their text spellings in ordinary tokens (see the module docstring).

    `text`/`text_first`: non-special added tokens and the first token of their spelling;
    `special`: special ones; `spelled`: the spelling of each.
    """

    text: np.ndarray
    text_first: np.ndarray
    special: np.ndarray
    spelled: dict[int, list[int]]


def _added_tokens(tokenizer: Tokenizer, llt: Any) -> _AddedTokens | None:
    decoder = getattr(tokenizer.hf, "added_tokens_decoder", {}) or {}
    spelled: dict[int, list[int]] = {}
    text: list[int] = []
    special: list[int] = []
    for idx, added in decoder.items():
        idx, content = int(idx), str(getattr(added, "content", ""))
        if not content or idx >= llt.vocab_size or idx in tokenizer.eos_token_ids:
            continue
        pieces = llt.greedy_tokenize(content)
        if not pieces or idx in pieces or llt.decode_bytes(pieces) != content.encode():
            continue
        spelled[idx] = pieces
        is_special = getattr(added, "special", True) or idx in tokenizer.special_ids
        (special if is_special else text).append(idx)
    if not spelled:
        return None
    return _AddedTokens(np.array(text, dtype=np.int64), np.array([spelled[i][0] for i in text], dtype=np.int64),
                        np.array(special, dtype=np.int64), spelled)


def _parse_json(grammar_type: str, grammar: str | dict) -> Any:
    if isinstance(grammar, str):
        try:
            return json.loads(grammar)
        except ValueError as e:
            raise ValueError(f"the {grammar_type} grammar is not valid JSON: {e}") from e
    return grammar


def _to_llguidance(grammar_type: str, grammar: str | dict) -> str:
    """The llguidance top-level grammar text for one request grammar (no validation yet)."""
    from llguidance import LLMatcher

    if grammar_type in ("regex", "lark"):
        if not isinstance(grammar, str):
            raise TypeError(f"a {grammar_type} grammar must be a str, got {type(grammar).__name__}")
        if grammar_type == "regex":
            return LLMatcher.grammar_from_regex(grammar)
        if not grammar.strip():
            raise ValueError("the lark grammar is empty; it needs at least a `start:` rule")
        return LLMatcher.grammar_from_lark(grammar)
    if not isinstance(grammar, (str, dict)):
        raise TypeError(f"a {grammar_type} grammar must be a JSON str or a dict, got {type(grammar).__name__}")
    obj = _parse_json(grammar_type, grammar)
    if grammar_type == "json_schema":
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON schema must be a JSON object, got {type(obj).__name__}")
        try:
            return LLMatcher.grammar_from_json_schema(obj)
        except ValueError as e:
            raise ValueError(f"invalid JSON schema: {e}") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("grammars"), list) or not obj["grammars"]:
        raise ValueError('an llguidance grammar must be a JSON object {"grammars": [...]} with at least one grammar')
    return json.dumps(obj)


def compile_grammar(tokenizer: Tokenizer, grammar_type: str, grammar: str | dict) -> Grammar:
    """Compile and validate a grammar for `tokenizer`'s model; runs in the caller's thread.

    `grammar_type` is one of `GRAMMAR_TYPES`: "regex" (a regex the whole output must match),
    "lark" (llguidance's Lark dialect: ``%json {...}`` inline schemas, ``"<tool_call>"``
    literals, ``/regex/`` terminals), "json_schema" (a schema as dict or JSON text) or
    "llguidance" (a top-level ``{"grammars": [...]}`` as dict or JSON text). Raises ValueError
    naming the problem (unknown type, invalid regex, Lark syntax error, bad schema) and
    TypeError for a grammar of the wrong Python type. Results are cached per tokenizer
    (64 entries); a `Grammar` is immutable and may serve any number of requests.
    """
    if grammar_type not in GRAMMAR_TYPES:
        raise ValueError(f"unknown grammar_type {grammar_type!r}; use one of {', '.join(GRAMMAR_TYPES)}")
    llt = grammar_tokenizer(tokenizer)
    from llguidance import LLMatcher

    try:
        key = (grammar_type, grammar if isinstance(grammar, str) else json.dumps(grammar))
    except (TypeError, ValueError):
        key = None  # not JSON-serialisable: _to_llguidance reports it
    cache = _state(tokenizer).compiled
    if key is not None:
        with _lock:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
    text = _to_llguidance(grammar_type, grammar)
    is_error, messages = LLMatcher.validate_grammar_with_warnings(text, llt)
    if is_error:
        raise ValueError(f"invalid {grammar_type} grammar: {messages[0].strip()}")
    for msg in messages:
        log.warning("%s grammar: %s", grammar_type, msg)
    proto = LLMatcher(llt, text, log_level=0)
    if proto.is_error():
        raise ValueError(f"invalid {grammar_type} grammar: {proto.get_error().strip()}")
    compiled = Grammar(grammar_type, text, tokenizer, proto)
    if key is not None:
        with _lock:
            cache[key] = compiled
            while len(cache) > _COMPILED_CACHE_SIZE:
                cache.popitem(last=False)
    return compiled


@dataclass(frozen=True, eq=False)
class Grammar:
    """A validated grammar bound to one model's tokenizer; `new_matcher` per sequence."""

    grammar_type: str
    text: str  # the llguidance top-level grammar (JSON or Lark) it was compiled from
    tokenizer: Tokenizer
    _proto: Any = field(repr=False)

    @property
    def vocab_size(self) -> int:
        """Number of token ids the masks cover (llguidance's view of the vocabulary)."""
        return grammar_tokenizer(self.tokenizer).vocab_size

    def new_matcher(self) -> GrammarMatcher:
        """A fresh matcher at the start of the grammar (a cheap copy of the compiled one)."""
        return GrammarMatcher(self._proto.deep_copy(), self)


class GrammarMatcher:
    """The grammar state of one sequence: masks for the next token, `consume` for the sampled one.

    Not thread-safe: the engine uses a matcher from one thread at a time (the mask worker during
    the forward, the engine thread after it joined).
    """

    __slots__ = ("_added", "_m", "_spans", "grammar")

    def __init__(self, matcher: Any, grammar: Grammar) -> None:
        self._m = matcher
        self.grammar = grammar
        self._added: _AddedTokens | None = _state(grammar.tokenizer).added
        self._spans: list[int] = []  # llguidance tokens per consumed token (a text token may be several)

    @property
    def vocab_size(self) -> int:
        return self.grammar.vocab_size

    def fill_bitmask(self, bitmask: np.ndarray | torch.Tensor, row: int = 0) -> None:
        """Write the allowed-token bitmask into row `row` of a C-contiguous CPU int32 array.

        Bit ``t % 32`` of word ``t // 32`` is set when token `t` is allowed (llguidance layout);
        the row needs exactly ``ceil(vocab_size / 32)`` words.
        """
        words = (self.vocab_size + 31) // 32
        if isinstance(bitmask, torch.Tensor):
            if bitmask.dtype != torch.int32 or bitmask.device.type != "cpu" or not bitmask.is_contiguous():
                raise ValueError("the bitmask must be a contiguous CPU int32 tensor")
            if bitmask.dim() != 2 or bitmask.shape[1] != words or not 0 <= row < bitmask.shape[0]:
                raise ValueError(f"the bitmask must be [rows, {words}] with row < rows, got {tuple(bitmask.shape)}")
            ptr = bitmask[row].data_ptr()
        else:
            if bitmask.dtype != np.int32 or not bitmask.flags.c_contiguous:
                raise ValueError("the bitmask must be a C-contiguous int32 array")
            if bitmask.ndim != 2 or bitmask.shape[1] != words or not 0 <= row < bitmask.shape[0]:
                raise ValueError(f"the bitmask must be [rows, {words}] with row < rows, got {bitmask.shape}")
            ptr = bitmask[row].ctypes.data
        self._m.unsafe_compute_mask_ptr(ptr, words * 4)

    def allowed_tokens(self) -> torch.Tensor:
        """Bool mask [vocab_size] of the tokens allowed next (convenience; the engine batches)."""
        bm = np.zeros((1, (self.vocab_size + 31) // 32), dtype=np.int32)
        self.fill_bitmask(bm, 0)
        row = unpack_bitmask(bm, self.vocab_size)[0]
        self.fix_added_tokens(row)
        return torch.from_numpy(row.view(np.bool_))

    def fix_added_tokens(self, row: np.ndarray) -> None:
        """Allow each non-special added token whose text the grammar accepts here; replace a special
        one llguidance allows but would reject (a forced literal of its text) by its spelling."""
        at = self._added
        if at is None:
            return
        m = self._m
        for j in np.flatnonzero(row[at.text_first] & (row[at.text] ^ 1)).tolist():
            tok = int(at.text[j])
            if m.validate_tokens(at.spelled[tok]) == len(at.spelled[tok]):
                row[tok] = 1
        for j in np.flatnonzero(row[at.special]).tolist():
            tok = int(at.special[j])
            if m.validate_tokens([tok]) != 1:
                row[tok] = 0
                if m.validate_tokens(at.spelled[tok][:1]) == 1:
                    row[at.spelled[tok][0]] = 1

    def consume(self, token_id: int) -> bool:
        """Advance by one sampled token; False when it violates the grammar (the matcher errors).

        A non-special added token the grammar rejects as a token is consumed as its text.
        """
        tok = int(token_id)
        at = self._added
        spelled = at.spelled.get(tok) if at is not None else None
        if spelled is not None and tok not in at.special and self._m.validate_tokens([tok]) != 1:
            ok = bool(self._m.consume_tokens(spelled))
            self._spans.append(len(spelled))
            return ok
        self._spans.append(1)
        return bool(self._m.consume_token(tok))

    def is_accepting(self) -> bool:
        """True when the output so far is a complete match (EOS is allowed)."""
        return bool(self._m.is_accepting())

    def is_stopped(self) -> bool:
        """True when nothing but EOS can follow (grammar complete) or the matcher is in error."""
        return bool(self._m.is_stopped())

    def is_error(self) -> bool:
        return bool(self._m.is_error())

    @property
    def error(self) -> str:
        """The matcher's error message, "" when none."""
        return self._m.get_error()

    def stop_reason(self) -> str:
        """llguidance's stop reason ("NotStopped", "NoExtension", "EndOfSentence", ...)."""
        return str(self._m.stop_reason())

    def rollback(self, num_tokens: int) -> bool:
        """Undo the last `num_tokens` tokens passed to `consume`."""
        n = int(num_tokens)
        if n <= 0:
            return n == 0
        if n > len(self._spans):
            return False
        inner = sum(self._spans[-n:])
        del self._spans[-n:]
        return bool(self._m.rollback(inner))

    def reset(self) -> bool:
        """Back to the start of the grammar."""
        self._spans.clear()
        return bool(self._m.reset())


def unpack_bitmask(bitmask: np.ndarray, vocab: int) -> np.ndarray:
    """Packed int32 rows [k, W] -> uint8 0/1 rows [k, vocab] (token t = bit t%32 of word t//32)."""
    as_bytes = np.ascontiguousarray(bitmask.astype("<i4", copy=False)).view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, count=vocab, bitorder="little")
