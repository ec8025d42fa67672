"""Tokenizer loading (HF dir, tokenizer.json, GGUF with disk cache) and incremental detokenization."""

from __future__ import annotations

import json
import os
import time

import pytest

from agentkit.engine.tokenizer import IncrementalDetokenizer, Tokenizer, load_tokenizer

# performance.md Appendix A.4: SmolLM2 ids (HF and llama.cpp agree).
A4 = [
    ("The quick brown fox jumps over the lazy dog.", [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]),
    (
        "Hello, world! 1234 café — naïve résumé, <|im_start|> tokens.",
        [19556, 28, 905, 17, 216, 33, 34, 35, 36, 37366, 1841, 15486, 46494, 412, 2756, 5422, 2756, 28, 216, 1,
         17837, 30],
    ),
]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "café naïve résumé — über straße",
    "emoji 🙂 and more 🙂🙂!",
    "日本語のテキスト",
    "  leading spaces,\n\ttabs and\nnew lines  ",
    "<|im_start|>user\nHi 🙂<|im_end|>\n<|im_start|>assistant\n",
]


def _stream(tok: Tokenizer, ids, skip: bool, **kw) -> tuple[list[str], IncrementalDetokenizer]:
    detok = IncrementalDetokenizer(tok, skip_special_tokens=skip, **kw)
    deltas = [detok.push(i) for i in ids]
    deltas.append(detok.flush())
    return deltas, detok


def _check_streaming(tok: Tokenizer) -> None:
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.decode(ids, skip_special_tokens=False) == text  # round trip with specials kept
        for skip in (True, False):
            deltas, detok = _stream(tok, ids, skip)
            expected = tok.decode(ids, skip_special_tokens=skip)
            assert "".join(deltas) == expected == detok.text, (text, skip)
            assert not any("\ufffd" in d for d in deltas), (text, deltas)


@pytest.fixture(scope="module")
def tiny_tok(tiny_llama) -> Tokenizer:
    return load_tokenizer(tiny_llama)


def test_tiny_tokenizer_wraps_transformers(tiny_llama, tiny_tok):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(tiny_llama)
    for text in TEXTS:
        assert tiny_tok.encode(text) == ref.encode(text, add_special_tokens=False)
        ids = ref.encode(text, add_special_tokens=False)
        assert tiny_tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)
        assert tiny_tok.decode(ids, skip_special_tokens=False) == ref.decode(ids)
    assert tiny_tok.vocab_size == len(ref)
    im_end = ref.convert_tokens_to_ids("<|im_end|>")
    assert tiny_tok.eos_token_ids == {im_end}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # <tool_call> is added but not special (as Qwen)
    assert tiny_tok.special_ids == set(ref.convert_tokens_to_ids(specials))
    assert "<tool_call>" in tiny_tok.decode(ref.encode("<tool_call>", add_special_tokens=False))
    assert tiny_tok.special_tokens_map() == {
        "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": None, "pad_token": "<|endoftext|>",
    }
    assert (tiny_tok.bos_token, tiny_tok.eos_token, tiny_tok.unk_token) == ("<|endoftext|>", "<|im_end|>", None)
    strings = tiny_tok.token_strings()
    assert strings is tiny_tok.token_strings() and len(strings) == len(ref)
    assert strings[im_end] == "<|im_end|>"
    for i in tiny_tok.encode("The quick brown fox"):
        assert strings[i] == ref.decode([i])


def test_load_from_tokenizer_json_and_extra_eos(tiny_llama, tiny_tok):
    tok = load_tokenizer(None, tokenizer_json=os.path.join(tiny_llama, "tokenizer.json"), extra_eos_ids=[7])
    assert tok.encode(TEXTS[1]) == tiny_tok.encode(TEXTS[1])
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_ids == tiny_tok.eos_token_ids | {7}
    assert load_tokenizer(tiny_llama, extra_eos_ids=(3,)).eos_token_ids == tiny_tok.eos_token_ids | {3}


def test_generation_config_eos_ids(tmp_path, tiny_llama):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(tiny_llama, name), encoding="utf-8") as src:
            (tmp_path / name).write_text(src.read(), encoding="utf-8")
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 4]}))
    assert load_tokenizer(str(tmp_path)).eos_token_ids == {2, 4}


def test_load_errors(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="no such model directory.*missing"):
        load_tokenizer(missing)
    with pytest.raises(ValueError, match=r"missing\.gguf.*does not exist"):
        load_tokenizer(None, gguf_path=missing + ".gguf")
    with pytest.raises(ValueError, match=r"missing\.json.*does not exist"):
        load_tokenizer(None, tokenizer_json=missing + ".json")
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match="none was given"):
        load_tokenizer(None)


def test_incremental_detokenizer_tiny(tiny_tok):
    _check_streaming(tiny_tok)
    # Byte-level BPE splits the emoji into byte tokens: the detokenizer holds them back until complete.
    ids = tiny_tok.encode("🙂")
    assert len(ids) > 1
    deltas, _ = _stream(tiny_tok, ids, True)
    assert deltas[:-2] == [""] * (len(ids) - 1) and deltas[-2] == "🙂"


def test_incremental_detokenizer_flushes_incomplete_bytes(tiny_tok):
    ids = tiny_tok.encode("a🙂")[:-1]  # cut the emoji short
    deltas, detok = _stream(tiny_tok, ids, True)
    assert "".join(deltas) == tiny_tok.decode(ids) and deltas[-1].endswith("\ufffd")
    assert detok.flush() == ""


def test_incremental_detokenizer_decodes_short_windows(tiny_tok):
    ids = tiny_tok.encode(" ".join(TEXTS) * 5)
    lengths = []
    original = tiny_tok.decode

    class Spy(Tokenizer):
        def decode(self, ids, skip_special_tokens=True):
            lengths.append(len(ids))
            return original(ids, skip_special_tokens=skip_special_tokens)

    spy = Spy(tiny_tok.hf)
    deltas, _ = _stream(spy, ids, True)
    assert len(ids) > 300 and "".join(deltas) == tiny_tok.decode(ids)
    assert max(lengths) <= 8


def _sentencepiece_tokenizer() -> Tokenizer:
    """A Llama-style tokenizer: Metaspace '▁' pieces, byte fallback, space-stripping decoder."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    corpus = ["Hello world, the quick brown fox jumps over the lazy dog.", "café naïve résumé"] * 10
    raw.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    spec = json.loads(raw.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    raw = RawTokenizer.from_str(json.dumps(spec))
    raw.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    return Tokenizer(PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>",
                                             unk_token="<unk>"))


def test_incremental_detokenizer_sentencepiece_spaces():
    tok = _sentencepiece_tokenizer()
    ids = tok.encode("Hello world, the quick brown fox")
    assert tok.hf.convert_ids_to_tokens(ids)[1].startswith("\u2581")
    assert [tok.decode([i]) for i in ids][1] == tok.hf.convert_ids_to_tokens(ids)[1][1:]  # alone: no space
    deltas, _ = _stream(tok, ids, True)
    assert "".join(deltas) == "Hello world, the quick brown fox" and deltas[1].startswith(" ")
    for text in TEXTS[:5]:
        ids = tok.encode(text)
        deltas, _ = _stream(tok, ids, True)
        assert "".join(deltas) == tok.decode(ids), text
        assert not any("\ufffd" in d for d in deltas)
    # prompt context keeps the first generated token's leading space
    prompt, gen = tok.encode("Hello"), tok.encode("Hello world")[1:]
    deltas, _ = _stream(tok, gen, True, prompt_ids=prompt)
    assert "".join(deltas) == " world"
    space_piece = tok.hf.convert_tokens_to_ids("\u2581the")
    assert tok.token_strings()[space_piece] == " the"


@pytest.fixture(scope="module")
def smol_timed(smollm2, tmp_path_factory):
    """(first load, second load, seconds of each, cache root) for the SmolLM2 GGUF with a fresh cache."""
    directory, name = smollm2
    cache = str(tmp_path_factory.mktemp("agentkit-cache"))
    old = os.environ.get("AGENTKIT_CACHE")
    os.environ["AGENTKIT_CACHE"] = cache
    try:
        t0 = time.perf_counter()
        first = load_tokenizer(None, gguf_path=os.path.join(directory, name))
        t1 = time.perf_counter()
        second = load_tokenizer(None, gguf_path=os.path.join(directory, name))
        t2 = time.perf_counter()
    finally:
        if old is None:
            os.environ.pop("AGENTKIT_CACHE", None)
        else:
            os.environ["AGENTKIT_CACHE"] = old
    return first, second, (t1 - t0, t2 - t1), cache


@pytest.mark.slow
def test_smollm2_gguf_tokenizer_and_cache(smol_timed):
    first, second, (t_first, t_second), cache = smol_timed
    entries = os.listdir(os.path.join(cache, "tokenizers"))
    assert len(entries) == 1 and len(entries[0]) == 64  # one sha256-named entry, no temp dirs left
    assert os.path.isfile(os.path.join(cache, "tokenizers", entries[0], "tokenizer.json"))
    assert t_second < t_first / 3, (t_first, t_second)
    # `first.hf` is transformers' own AutoTokenizer.from_pretrained(dir, gguf_file=...) result.
    for text, ids in A4:
        assert second.encode(text) == ids == list(first.hf.encode(text, add_special_tokens=False))
        assert second.encode(text, add_special_tokens=True) == ids  # the GGUF sets add_bos=false
        assert second.decode(ids, skip_special_tokens=False) == text
    assert second.vocab_size == 49152
    assert (second.bos_token, second.eos_token, second.unk_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert second.eos_token_ids == {2} and {0, 1, 2} <= second.special_ids
    assert second.hf.chat_template == first.hf.chat_template


@pytest.mark.slow
def test_incremental_detokenizer_smollm2(smol_timed):
    tok = smol_timed[1]
    _check_streaming(tok)
    strings = tok.token_strings()
    assert len(strings) == 49152 and strings[504] == "The" and strings[2365] == " quick"
