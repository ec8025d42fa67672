"""Constrained decoding: grammar compilation, masks in the engine, EOS/stop semantics, isolation.

The tiny random models emit garbage unless constrained, so "every sampled output matches" is a
real check of the masks. Requests go straight to the engine (EngineRequest + compile_grammar).
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch

from agentkit.api.which import Which
from agentkit.engine.config import EngineConfig
from agentkit.engine.grammar import GRAMMAR_TYPES, Grammar, compile_grammar, grammar_tokenizer
from agentkit.engine.grammar_masks import compute_masks
from agentkit.engine.sampling import SampleRow, SamplingParams, sample
from agentkit.engine.sequence import EngineRequest
from agentkit.engine.tokenizer import load_tokenizer
from agentkit.models.local import load_model

_ids = itertools.count()

TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12},
                           "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},  # a random model would pad with whitespace forever
}


def tool_lark(text_rule: str) -> str:
    return (f'start: TEXT? "<tool_call>\\n" call "\\n</tool_call>"\n{text_rule}\n'
            f"call: %json {json.dumps(TOOL_SCHEMA)}\n")


TOOL_RE = re.compile(r"(?s)(?P<text>[^<]*)<tool_call>\n(?P<call>.*)\n</tool_call>")


def check_tool_call(text: str) -> dict:
    m = TOOL_RE.fullmatch(text)
    assert m, text
    call = json.loads(m["call"])
    assert call["name"] == "get_weather"
    args = call["arguments"]
    assert set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    return call


def load(model_dir: str, **cfg):
    return load_model(Which.Plain(model_dir), engine_config=EngineConfig(**cfg), token=None, chat_template=None,
                      jinja_explicit=None, progress=False)


@pytest.fixture(scope="module")
def host(tiny_llama):
    h = load(tiny_llama)
    yield h
    h.shutdown()


def prompt(host, text: str = "What is the weather in Paris today?") -> list[int]:
    return host.tokenizer.encode(text)


def submit(host, grammar=None, *, ids=None, n=1, **params) -> EngineRequest:
    req = EngineRequest(f"g{next(_ids)}", ids or prompt(host), SamplingParams(**params), n=n, grammar=grammar)
    return host.engine.submit(req)


def collect(req: EngineRequest, timeout: float = 60) -> dict:
    """{'error', 'text': [per choice], 'ids', 'finish', 'stop_seq', 'samples'} of a finished request."""
    out = {"error": None, "text": {}, "ids": {}, "finish": {}, "stop_seq": {}, "samples": {}}
    while True:
        ev = req.outputs.get(timeout=timeout)
        if ev.error:
            out["error"] = ev.error
        for d in ev.deltas:
            out["text"][d.index] = out["text"].get(d.index, "") + d.text
            out["ids"].setdefault(d.index, []).extend(d.token_ids)
            out["samples"].setdefault(d.index, []).extend(d.samples)
            if d.finish_reason is not None:
                out["finish"][d.index] = d.finish_reason
                out["stop_seq"][d.index] = d.stop_sequence
        if ev.finished:
            out["cached_tokens"] = ev.cached_tokens
            return out


def run(host, grammar=None, **kw) -> dict:
    return collect(submit(host, grammar, **kw))


# ---- compilation --------------------------------------------------------------------------------

def test_grammar_tokenizer_is_cached_with_model_eos(host):
    tok = host.tokenizer
    llt = grammar_tokenizer(tok)
    assert grammar_tokenizer(tok) is llt
    assert sorted(llt.eos_tokens) == sorted(tok.eos_token_ids)
    assert llt.vocab_size == tok.vocab_size
    assert GRAMMAR_TYPES == ("regex", "lark", "json_schema", "llguidance")


@pytest.mark.parametrize(("gtype", "grammar", "needle"), [
    ("regex", "[0-9", "invalid regex grammar"),
    ("lark", 'start: "a" (', "invalid lark grammar"),
    ("lark", "start: undefined_rule", "undefined_rule"),
    ("lark", "", "empty"),
    ("lark", 'start: "x" call\ncall: %json {"type": "objec"}', "objec"),
    ("json_schema", {"type": "intege"}, "intege"),
    ("json_schema", "{not json", "not valid JSON"),
    ("json_schema", "[1, 2]", "JSON object"),
    ("llguidance", {"grammars": []}, "grammars"),
    ("llguidance", {"grammars": [{"foo": 1}]}, "lark_grammar or json_schema"),
    ("ebnf", "x", "unknown grammar_type 'ebnf'"),
])
def test_bad_grammar_is_a_value_error(host, gtype, grammar, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        compile_grammar(host.tokenizer, gtype, grammar)


def test_wrong_python_type_is_a_type_error(host):
    with pytest.raises(TypeError, match="must be a str"):
        compile_grammar(host.tokenizer, "regex", {"a": 1})
    with pytest.raises(TypeError, match="JSON str or a dict"):
        compile_grammar(host.tokenizer, "json_schema", 3)


def test_compiled_grammars_are_cached_and_matchers_independent(host):
    g = compile_grammar(host.tokenizer, "regex", "ab|ac")
    assert compile_grammar(host.tokenizer, "regex", "ab|ac") is g
    assert isinstance(g, Grammar) and g.grammar_type == "regex"
    m1, m2 = g.new_matcher(), g.new_matcher()
    a = host.tokenizer.hf.convert_tokens_to_ids("a")
    assert m1.allowed_tokens()[a] and m1.consume(a)
    assert not m1.allowed_tokens()[a] and m2.allowed_tokens()[a]  # m2 did not move
    assert m1.rollback(1) and m1.allowed_tokens()[a]


def test_eos_only_when_accepting_and_ignore_eos_drops_it(host):
    tok = host.tokenizer
    eos = next(iter(tok.eos_token_ids))
    g = compile_grammar(tok, "regex", "a|ab")
    m = g.new_matcher()
    assert not m.allowed_tokens()[eos]
    m.consume(tok.hf.convert_tokens_to_ids("a"))
    assert m.is_accepting() and not m.is_stopped() and m.allowed_tokens()[eos]
    keep, drop = compute_masks([(m, False), (m, True)]).rows
    assert keep.allowed[eos] and not drop.allowed[eos] and drop.allowed.any()
    m.consume(tok.hf.convert_tokens_to_ids("b"))
    assert m.is_stopped()
    assert compute_masks([(m, False)]).rows[0].stopped


@pytest.fixture(scope="module")
def added_tok():
    """The tiny tokenizer plus a non-special added token <call> and a special one <|mark|>."""
    from tokenizers import AddedToken

    from agentkit.engine.tokenizer import Tokenizer
    from agentkit.testing import tiny_tokenizer

    hf = tiny_tokenizer()
    hf.add_tokens([AddedToken("<call>", special=False, normalized=False)])
    hf.add_tokens([AddedToken("<|mark|>", special=True, normalized=False)], special_tokens=True)
    return Tokenizer(hf)


def test_plain_literal_of_a_non_special_added_token(added_tok):
    """`"<call>"` in a grammar accepts the tokenizer's single <call> token (llguidance alone forces
    that token and then rejects it) as well as the text spelled in pieces."""
    tok = added_tok
    call, lt = (tok.hf.convert_tokens_to_ids(x) for x in ("<call>", "<"))
    g = compile_grammar(tok, "lark", 'start: TEXT? "<call>\\n" "x"\nTEXT: /[a-z]{1,3}/')
    forced = g.new_matcher()
    for t in tok.encode("abc"):  # TEXT is full: "<call>\n" is forced
        assert forced.consume(t)
    assert forced.allowed_tokens()[call] and forced.consume(call) and not forced.is_error()
    nl = tok.encode("\n")[0]
    assert forced.allowed_tokens().nonzero().flatten().tolist() == [nl]
    free = g.new_matcher()
    for t in tok.encode("ab"):
        assert free.consume(t)
    allowed = free.allowed_tokens()
    assert allowed[call] and allowed[lt]
    assert free.consume(call) and free.allowed_tokens()[nl]
    assert free.rollback(1) and free.allowed_tokens()[call]
    special_form = compile_grammar(tok, "lark", 'start: <call> "x"').new_matcher()
    assert special_form.consume(call) and not special_form.is_error()


def test_plain_literal_of_a_special_token_is_spelled_as_text(added_tok):
    tok = added_tok
    mark, lt = (tok.hf.convert_tokens_to_ids(x) for x in ("<|mark|>", "<"))
    assert mark in tok.special_ids
    m = compile_grammar(tok, "lark", 'start: "<|mark|>" "x"').new_matcher()
    allowed = m.allowed_tokens()
    assert not allowed[mark] and allowed[lt]  # llguidance alone allows only <|mark|>, then rejects it
    assert m.consume(lt)
    while not m.is_stopped():
        nxt = int(m.allowed_tokens().nonzero()[0])
        assert nxt != mark and m.consume(nxt)
    assert m.is_accepting() and not m.is_error()
    by_name = compile_grammar(tok, "lark", 'start: <|mark|> "x"').new_matcher()
    assert by_name.allowed_tokens().nonzero().flatten().tolist() == [mark] and by_name.consume(mark)


def test_engine_literal_tool_call_marker(host):
    tok = host.tokenizer
    call = tok.hf.convert_tokens_to_ids("<tool_call>")
    o = run(host, compile_grammar(tok, "lark", 'start: "<tool_call>" "x"'), max_tokens=20)
    assert o["error"] is None and o["finish"][0] == "stop" and o["text"][0] == "<tool_call>x", o
    if call not in tok.special_ids:  # a non-special added token: emitted as the single token
        assert o["ids"][0] == [call, tok.encode("x")[0]]


def test_masked_rows_report_logprobs_of_the_masked_distribution():
    torch.manual_seed(0)
    V = 1000
    logits = torch.randn(2, V) * 3
    mask = torch.zeros(V, dtype=torch.bool)
    mask[[3, 50, 51, 700, 999]] = True
    p = SamplingParams(logprobs=True, top_logprobs=3)
    masked, plain = sample(logits, [SampleRow(p, [], allowed_token_mask=mask), SampleRow(p, [])])
    ref = torch.log_softmax(logits[0].masked_fill(~mask, -torch.inf), -1)
    assert mask[masked.token] and masked.token == int(ref.argmax())
    assert masked.logprob == pytest.approx(float(ref[masked.token]), abs=1e-5)
    assert [t for t, _ in masked.top_logprobs] == ref.topk(3).indices.tolist()
    alone = sample(logits[1:], [SampleRow(p, [])])[0]
    assert (plain.token, plain.logprob) == (alone.token, alone.logprob)  # unmasked rows: bit-identical


# ---- engine: outputs always match ---------------------------------------------------------------

def test_regex_outputs_always_match(host):
    pattern = r"(yes|no|maybe): [0-9]{1,3}(\.[0-9]{1,2})? [a-z]{2,6}"
    g = compile_grammar(host.tokenizer, "regex", pattern)
    reqs = [submit(host, g, temperature=1.0, seed=s, max_tokens=40) for s in range(30)]
    outs = [collect(r) for r in reqs]
    for o in outs:
        assert o["error"] is None and o["finish"][0] == "stop", o
        assert re.fullmatch(pattern, o["text"][0]), o["text"][0]
    assert len({o["text"][0] for o in outs}) > 5  # really sampled
    unconstrained = run(host, temperature=1.0, seed=0, max_tokens=20)["text"][0]
    assert not re.fullmatch(pattern, unconstrained)


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "color": {"enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "color", "ok"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}


def check_schema(value: dict) -> None:
    assert isinstance(value, dict) and set(value) - {"tags"} == {"name", "age", "color", "ok"}, value
    assert isinstance(value["name"], str) and len(value["name"]) <= 8
    assert type(value["age"]) is int and 0 <= value["age"] <= 150
    assert value["color"] in ("red", "green", "blue") and type(value["ok"]) is bool
    assert all(t in ("a", "b") for t in value.get("tags", [])) and len(value.get("tags", [])) <= 3


def test_json_schema_outputs_always_valid(host):
    g = compile_grammar(host.tokenizer, "json_schema", json.dumps(JSON_SCHEMA))  # JSON text form
    reqs = [submit(host, g, temperature=1.0, seed=s, max_tokens=120) for s in range(30)]
    for r in reqs:
        o = collect(r)
        assert o["error"] is None and o["finish"][0] == "stop", o
        check_schema(json.loads(o["text"][0]))


def test_serial_masks_give_the_same_outputs_as_overlapped_ones(host):
    # EngineConfig.overlap_grammar_masks=False (bench/grammar.py's baseline) is read at each step
    g = compile_grammar(host.tokenizer, "json_schema", json.dumps(JSON_SCHEMA))
    outs = {}
    try:
        for overlap in (True, False):
            host.engine.config.overlap_grammar_masks = overlap
            host.engine.grammar_stats.reset()
            reqs = [submit(host, g, temperature=1.0, seed=s, max_tokens=120) for s in range(4)]
            outs[overlap] = [collect(r)["text"][0] for r in reqs]
            stats = host.engine.grammar_stats
            assert stats.rows > 0 and (stats.wait_s == stats.mask_s) == (not overlap)  # serial: all mask time exposed
    finally:
        host.engine.config.overlap_grammar_masks = True
    assert outs[True] == outs[False]
    for text in outs[False]:
        check_schema(json.loads(text))


def test_lark_tool_call_grammar_end_to_end(host):
    g = compile_grammar(host.tokenizer, "lark", tool_lark("TEXT: /[A-Za-z ,.]{1,16}/"))
    reqs = [submit(host, g, temperature=1.0, seed=s, max_tokens=120) for s in range(12)]
    calls = []
    for r in reqs:
        o = collect(r)
        assert o["error"] is None and o["finish"][0] == "stop", o
        calls.append(check_tool_call(o["text"][0]))
    assert len({c["arguments"]["city"] for c in calls}) > 1


def test_llguidance_grammar_dict_and_text(host):
    top = {"grammars": [
        {"lark_grammar": 'start: "answer: " NUM " " obj\nNUM: /[0-9]{2}/\nobj: @sub'},
        {"name": "sub", "json_schema": {"type": "object", "properties": {"v": {"type": "boolean"}},
                                        "required": ["v"], "additionalProperties": False,
                                        "x-guidance": {"whitespace_flexible": False}}},
    ]}
    for form in (top, json.dumps(top)):
        g = compile_grammar(host.tokenizer, "llguidance", form)
        for seed in range(5):
            o = run(host, g, temperature=1.0, seed=seed, max_tokens=40)
            assert o["error"] is None and o["finish"][0] == "stop", o
            m = re.fullmatch(r"answer: [0-9]{2} (.*)", o["text"][0], re.S)
            assert m and isinstance(json.loads(m[1])["v"], bool), o["text"][0]


# ---- engine: EOS, stop, length ------------------------------------------------------------------

def test_complete_grammar_stops_without_sampling_eos(host):
    tok = host.tokenizer
    g = compile_grammar(tok, "lark", 'start: "hello world"')
    o = run(host, g, temperature=1.0, seed=1, max_tokens=30)
    assert o["text"][0] == "hello world" and o["finish"][0] == "stop"
    assert not set(o["ids"][0]) & tok.eos_token_ids  # ended on completion, no EOS step
    o = run(host, g, max_tokens=30, ignore_eos=True)  # ignore_eos: completion still ends it
    assert o["text"][0] == "hello world" and o["finish"][0] == "stop"


def test_greedy_top_eos_is_masked_not_an_error(host):
    tok = host.tokenizer
    eos = next(iter(tok.eos_token_ids))
    bias = {eos: 50.0}  # EOS is the greedy top token at every step
    plain = run(host, logit_bias=bias, max_tokens=10)
    assert plain["ids"][0] == [eos] and plain["finish"][0] == "stop"
    g = compile_grammar(tok, "regex", "[a-z]{3,9}")
    o = run(host, g, logit_bias=bias, max_tokens=20)
    assert o["error"] is None and o["finish"][0] == "stop"
    assert re.fullmatch("[a-z]{3,9}", o["text"][0])
    assert o["ids"][0][-1] == eos  # EOS taken as soon as the grammar accepted
    # ignore_eos: EOS stays masked until the grammar is complete, which then ends the sequence
    o = run(host, g, logit_bias=bias, max_tokens=20, ignore_eos=True)
    assert o["finish"][0] == "stop" and re.fullmatch("[a-z]{9}", o["text"][0]), o


def test_stop_strings_and_max_tokens_still_apply(host):
    g = compile_grammar(host.tokenizer, "lark", 'start: "hello world and more"')
    o = run(host, g, stop_seqs=["world"], max_tokens=30)
    assert o["text"][0] == "hello " and o["finish"][0] == "stop" and o["stop_seq"][0] == "world"
    o = run(host, g, max_tokens=2)
    assert o["finish"][0] == "length" and len(o["ids"][0]) == 2
    assert "hello world and more".startswith(o["text"][0])


# ---- engine: batching, n, logprobs, seeds, recompute ---------------------------------------------

def test_plain_request_unchanged_when_batched_with_grammar(host):
    ids = prompt(host, "Tell me a story about a fox.")
    alone = run(host, ids=ids, max_tokens=24, ignore_eos=True, logprobs=True)
    stats = host.engine.grammar_stats
    rows_before = stats.rows
    g = compile_grammar(host.tokenizer, "regex", "[a-z ]{60}")
    constrained = submit(host, g, temperature=1.0, seed=3, max_tokens=80)
    together = submit(host, ids=ids, max_tokens=24, ignore_eos=True, logprobs=True)
    c, t = collect(constrained), collect(together)
    assert re.fullmatch("[a-z ]{60}", c["text"][0])
    assert t["ids"] == alone["ids"] and t["text"] == alone["text"]
    lp_alone = [s.logprob for s in alone["samples"][0]]
    lp_together = [s.logprob for s in t["samples"][0]]
    assert lp_together == pytest.approx(lp_alone, abs=1e-4)
    assert stats.rows > rows_before and stats.mask_s > 0


def test_plain_requests_pay_nothing(host):
    stats = host.engine.grammar_stats
    before = (stats.steps, stats.rows)
    run(host, max_tokens=8, ignore_eos=True)
    assert (stats.steps, stats.rows) == before


def test_n_choices_logprobs_and_seeds(host):
    pattern = "[a-z]{4}-[0-9]{4}"
    g = compile_grammar(host.tokenizer, "regex", pattern)
    a = run(host, g, n=3, temperature=1.0, seed=7, logprobs=True, top_logprobs=3, max_tokens=20)
    b = run(host, g, n=3, temperature=1.0, seed=7, logprobs=True, top_logprobs=3, max_tokens=20)
    assert a["error"] is None and sorted(a["text"]) == [0, 1, 2]
    for i in range(3):
        assert re.fullmatch(pattern, a["text"][i]) and a["finish"][i] == "stop"
        for s in a["samples"][i]:
            assert s.logprob > -1e9 and len(s.top_logprobs) >= 1
    assert a["text"] == b["text"]  # seeded: reproducible
    assert len(set(a["text"].values())) > 1  # each choice has its own matcher and RNG


G_RECOMPUTE = "[a-z]{3}( [a-z]{2,5}){6}"


def recompute_outputs(h, keeper: bool = False) -> list[dict]:
    long_prompt = prompt(h, "Tell me about the weather in Paris and the quick brown fox. " * 6)
    g = compile_grammar(h.tokenizer, "regex", G_RECOMPUTE)
    # `keeper` decodes through every step, so each step also has a logit row besides the prompt chunks
    keep = submit(h, max_tokens=100, ignore_eos=True) if keeper else None
    reqs = [submit(h, g, ids=long_prompt + [5 + i], temperature=1.0, seed=i, max_tokens=60) for i in range(4)]
    out = [collect(r) for r in reqs]
    if keep is not None:
        assert collect(keep)["error"] is None
    return out


@pytest.mark.parametrize("cfg", [
    pytest.param(dict(max_batch_tokens=16), id="chunked-prefill"),
    pytest.param(dict(max_batch_tokens=16, keeper=True), id="chunked-prefill-beside-decode"),
    pytest.param(dict(no_kv_cache=True), id="no-kv-cache"),
    pytest.param(dict(kv_ctxt_len=288, max_seqs=4, prefix_cache_n=0), id="preemption"),
])
def test_recompute_keeps_matcher_state(tiny_llama, host, cfg):
    """The matcher advances only on sampled tokens: re-fed prompt/generated tokens leave it alone."""
    ref = recompute_outputs(host)
    for o in ref:
        assert o["error"] is None and o["finish"][0] == "stop" and re.fullmatch(G_RECOMPUTE, o["text"][0])
    cfg = dict(cfg)
    keeper = cfg.pop("keeper", False)
    h = load(tiny_llama, **cfg)
    try:
        got = recompute_outputs(h, keeper)
        if "kv_ctxt_len" in cfg:
            assert h.engine.scheduler.num_preemptions > 0
    finally:
        h.shutdown()
    assert [o["error"] for o in got] == [None] * 4
    assert [o["text"] for o in got] == [o["text"] for o in ref]


def test_prefix_cache_with_grammar(host):
    ids = prompt(host, "A long shared system prompt about weather. " * 8)
    g = compile_grammar(host.tokenizer, "regex", "(sunny|rainy|cloudy), [0-9]{2} degrees")
    first = run(host, g, ids=ids, temperature=1.0, seed=11, max_tokens=30)
    second = run(host, g, ids=ids, temperature=1.0, seed=11, max_tokens=30)  # prompt blocks cached
    assert first["text"] == second["text"] and first["finish"][0] == "stop"
    assert first["cached_tokens"] == 0 and second["cached_tokens"] >= 32


# ---- engine: failures -------------------------------------------------------------------------------

class _BrokenGrammar:
    """Looks like a Grammar whose matchers are already in an error state."""

    def __init__(self, g: Grammar, bad_token: int) -> None:
        self.tokenizer, self._g, self._bad = g.tokenizer, g, bad_token

    def new_matcher(self):
        m = self._g.new_matcher()
        assert not m.consume(self._bad)
        return m


def test_grammar_error_fails_only_its_request(host):
    tok = host.tokenizer
    g = compile_grammar(tok, "regex", "[0-9]+")
    broken = _BrokenGrammar(g, tok.hf.convert_tokens_to_ids("a"))
    ids = prompt(host, "Tell me a story about a fox.")
    alone = run(host, ids=ids, max_tokens=12, ignore_eos=True)
    bad = submit(host, broken, n=2, max_tokens=10)
    good = submit(host, ids=ids, max_tokens=12, ignore_eos=True)
    b, o = collect(bad), collect(good)
    assert b["error"] and "constrained decoding failed" in b["error"]
    assert o["error"] is None and o["ids"] == alone["ids"]
    assert host.engine.num_active == 0


def test_grammar_of_another_tokenizer_is_rejected(host, tiny_llama):
    other = load_tokenizer(tiny_llama)
    g = compile_grammar(other, "regex", "[0-9]+")
    o = run(host, g, max_tokens=5)
    assert o["error"] and "another tokenizer" in o["error"]


# ---- SmolLM2 ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol_host(smollm2):
    h = load_model(Which.GGUF(smollm2[0], smollm2[1], None), engine_config=EngineConfig(), token=None,
                   chat_template=None, jinja_explicit=None, progress=False)
    yield h
    h.shutdown()


def chat_ids(h, text: str) -> list[int]:
    return h.tokenizer.encode(h.template.render([{"role": "user", "content": text}], add_generation_prompt=True))


@pytest.mark.slow
def test_smollm2_json_schema(smol_host):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    g = compile_grammar(smol_host.tokenizer, "json_schema", schema)
    o = run(smol_host, g, ids=chat_ids(smol_host, "Which city is the capital of France? Answer in JSON."),
            max_tokens=40)
    assert o["error"] is None and o["finish"][0] == "stop", o
    value = json.loads(o["text"][0])
    assert isinstance(value["city"], str) and value["city"]


@pytest.mark.slow
def test_smollm2_lark_tool_call(smol_host):
    g = compile_grammar(smol_host.tokenizer, "lark", tool_lark("TEXT: /[^<]{1,60}/"))
    o = run(smol_host, g, ids=chat_ids(smol_host, "What is the weather in Paris? Call get_weather."),
            max_tokens=100)
    assert o["error"] is None and o["finish"][0] == "stop", o
    check_tool_call(o["text"][0])
