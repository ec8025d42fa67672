"""Forced text is split where the tokenizer splits it (agentkit.engine.grammar_boundary).

Walking a grammar by always taking the *shortest* allowed token is the adversarial path: without
the rule it spells forced text byte by byte; with it every step inside forced text is the first
token of the tokenizer's own encoding of what is left.
"""

from __future__ import annotations

import json

import pytest

from agentkit.engine.grammar import compile_grammar, grammar_tokenizer
from agentkit.engine.grammar_boundary import forced_boundary
from agentkit.engine.grammar_masks import compute_masks
from agentkit.engine.tokenizer import Tokenizer, load_tokenizer


@pytest.fixture(scope="module")
def tiny_tok() -> Tokenizer:
    from agentkit.testing import tiny_tokenizer

    return Tokenizer(tiny_tokenizer())


def _shortest_walk(tok: Tokenizer, grammar_text: str, steps: int) -> list[tuple[bytes, int, list[int]]]:
    """(forced bytes, token taken, canonical encoding of the forced bytes) per step, taking the
    shortest allowed token (in bytes) each time, through the engine's batched masks."""
    llt = grammar_tokenizer(tok)
    m = compile_grammar(tok, "lark", grammar_text).new_matcher()
    walk = []
    for _ in range(steps):
        row = compute_masks([(m, False)]).rows[0]
        if row.allowed is None:
            break
        forced = m._m.compute_ff_bytes()
        allowed = row.allowed.nonzero().flatten().tolist()
        pick = min((t for t in allowed if t not in tok.eos_token_ids), key=lambda t: (len(llt.decode_bytes([t])), t))
        walk.append((forced, pick, llt.tokenize_bytes(forced)))
        assert m.consume(pick)
    return walk


def test_forced_literal_is_spelled_with_the_canonical_tokens(tiny_tok):
    # llguidance alone allows "P" before "ar" here: the free text after "Par" could extend its token ("Paris")
    literal = 'What is the weather today? {"name": "get_weather", "city": "Par'
    walk = _shortest_walk(tiny_tok, f"start: {json.dumps(literal)} /[a-z]+/", 60)
    inside = [(forced, pick, canon) for forced, pick, canon in walk if len(forced) >= 2]
    assert inside, "the literal should be forced"
    assert all(pick == canon[0] for _, pick, canon in inside), inside
    taken = [pick for forced, pick, _ in walk if forced]
    assert tiny_tok.decode(taken) == literal[:len(tiny_tok.decode(taken))]
    assert len(taken) < len(literal) / 2  # whole words, not bytes


def test_free_text_is_not_restricted(tiny_tok):
    g = compile_grammar(tiny_tok, "lark", "start: /[a-z ]{1,40}/")
    m = g.new_matcher()
    assert m._m.compute_ff_bytes() == b""
    before = compute_masks([(m, False)]).rows[0].allowed.clone()
    forced_boundary(tiny_tok, grammar_tokenizer(tiny_tok))
    assert bool((compute_masks([(m, False)]).rows[0].allowed == before).all())
    assert int(before.sum()) > 20


def test_split_tokens_keeps_the_canonical_first(tiny_tok):
    b = forced_boundary(tiny_tok, grammar_tokenizer(tiny_tok))
    first, split = b.split_tokens(b"weather")
    assert first == tiny_tok.encode("weather")[0]
    assert first not in split and split  # "w", "we", ... are other tokens ending inside "weather"
    assert b.split_tokens(b"w") == (None, [])


@pytest.fixture(scope="module")
def smol_tok(smollm2) -> Tokenizer:
    import os

    return load_tokenizer(None, gguf_path=os.path.join(*smollm2))


def test_smollm2_json_value_after_the_key_separator(smol_tok):
    """After ``{"expression":`` the grammar forces ``' "'``: SmolLM2's lone ``' '`` token (then
    ``'">'``) is refused, ``' "'`` and the longer ``' "('`` stay allowed."""
    schema = {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"],
              "additionalProperties": False,
              "x-guidance": {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}}
    m = compile_grammar(smol_tok, "json_schema", schema).new_matcher()
    for t in smol_tok.encode('{"expression":', add_special_tokens=False):
        assert m.consume(t)
    assert m._m.compute_ff_bytes() == b' "'
    allowed = m.allowed_tokens()
    ids = {s: smol_tok.encode(s, add_special_tokens=False) for s in (" ", ' "', ' "(')}
    assert all(len(v) == 1 for v in ids.values()), ids
    assert allowed[ids[' "'][0]] and allowed[ids[' "('][0]]
    assert not allowed[ids[" "][0]]
