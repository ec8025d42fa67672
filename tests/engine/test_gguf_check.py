"""Tests for GGUF header validation: hostile and truncated files fail fast with a clear error.

The reproducer of reliability defect D1 (a 100-byte file declaring a 2^61-element array) runs
through `Runner(...)` in a child process under an address-space limit and a timeout, so a
regression fails the test in seconds instead of eating the machine's memory.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import pytest

from agentkit.engine.loading.gguf_check import check_gguf_file
from agentkit.engine.loading.loader import load_gguf
from agentkit.errors import ModelLoadError
from agentkit.testing import write_tiny_gguf


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf(kvs: bytes = b"", n_kv: int = 0, tensors: bytes = b"", n_tensors: int = 0, pad: int = 64) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kvs + tensors + b"\0" * pad


def _write(tmp_path, data: bytes, name: str = "m.gguf") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


HOSTILE = {
    "array_length": (_gguf(_s("general.y") + struct.pack("<IIQ", 9, 4, 2**61), 1), "'general.y' array of 2305843009213693952"),
    "string_array": (_gguf(_s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**40), 1), "tokenizer.ggml.tokens"),
    "string_length": (_gguf(_s("general.name") + struct.pack("<IQ", 8, 2**62), 1), "'general.name' string (declared length"),
    "string_in_array": (_gguf(_s("tokenizer.ggml.tokens") + struct.pack("<IIQQ", 9, 8, 1, 2**50), 1), "string #0"),
    "key_length": (_gguf(struct.pack("<Q", 2**60), 1), "metadata key #0 (declared length"),
    "kv_count": (_gguf(n_kv=2**63), "metadata kv count 9223372036854775808"),
    "tensor_count": (_gguf(n_tensors=2**58), "tensor count 288230376151711744"),
    "tensor_dims": (_gguf(tensors=_s("w") + struct.pack("<I", 2**31), n_tensors=1), "'w' declares 2147483648 dimensions"),
    "tensor_beyond_eof": (
        _gguf(tensors=_s("w") + struct.pack("<IQQIQ", 2, 2**32, 2**32, 0, 0), n_tensors=1),
        "shorter than its tensor table requires: tensor 'w'",
    ),
    "tensor_offset": (
        _gguf(tensors=_s("w") + struct.pack("<IQIQ", 1, 4, 0, 2**63), n_tensors=1),
        "shorter than its tensor table requires",
    ),
    "value_type": (_gguf(_s("general.z") + struct.pack("<I", 77), 1), "unknown value type 77"),
    "tensor_type": (_gguf(tensors=_s("w") + struct.pack("<IQIQ", 1, 4, 999, 0), n_tensors=1), "unknown ggml type 999"),
    "nested_arrays": (
        _gguf(_s("general.n") + struct.pack("<II", 9, 9) + struct.pack("<Q", 1) + struct.pack("<IQ", 9, 1) * 6, 1),
        "nests arrays deeper",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_rejected(tmp_path, case):
    data, expected = HOSTILE[case]
    path = _write(tmp_path, data)
    with pytest.raises(ModelLoadError) as info:
        check_gguf_file(path)
    message = str(info.value)
    assert expected in message and path in message


def test_not_gguf_and_bad_version(tmp_path):
    with pytest.raises(ModelLoadError, match="not a readable GGUF file"):
        check_gguf_file(_write(tmp_path, b"\x80\x02}q\x00." + b"\0" * 64, "pickle.gguf"))
    with pytest.raises(ModelLoadError, match="not a readable GGUF file"):
        check_gguf_file(_write(tmp_path, b"GGU", "short.gguf"))
    with pytest.raises(ModelLoadError, match="version 1; agentkit reads GGUF versions 2 and 3"):
        check_gguf_file(_write(tmp_path, b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "v1.gguf"))


def test_valid_files_pass(tmp_path, tiny_llama, smollm2):
    layout = check_gguf_file(os.path.join(*smollm2))
    assert layout.tensor_count == 272 and layout.data_end == layout.file_size
    path = str(tmp_path / "t.gguf")
    write_tiny_gguf(tiny_llama, path, "llama")
    layout = check_gguf_file(path)
    assert 0 < layout.data_offset < layout.data_end <= layout.file_size
    # a vocabulary-only style file (metadata, no tensors) is valid too
    meta = _s("general.architecture") + struct.pack("<I", 8) + _s("llama")
    assert check_gguf_file(_write(tmp_path, _gguf(meta, 1, pad=0), "vocab.gguf")).tensor_count == 0


def test_truncated_gguf_says_the_file_is_short(tmp_path, tiny_llama):
    path = str(tmp_path / "m.gguf")
    write_tiny_gguf(tiny_llama, path, "llama")
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(ModelLoadError) as info:
        load_gguf(str(tmp_path), "m.gguf", dtype=__import__("torch").float32, progress=False)
    message = str(info.value)
    assert "shorter than its tensor table requires" in message and "m.gguf" in message
    assert "reshape" not in message
    with open(path, "r+b") as fh:  # cut inside the header: the field that overruns is named
        fh.truncate(200)
    with pytest.raises(ModelLoadError, match="beyond the end of the file"):
        load_gguf(str(tmp_path), "m.gguf", dtype=__import__("torch").float32, progress=False)


_CHILD = textwrap.dedent(
    """
    import os, resource, struct, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    from agentkit import Runner, Which
    d = sys.argv[1]
    kv = struct.pack("<Q", 9) + b"general.y" + struct.pack("<IIQ", 9, 4, 2**61)
    open(os.path.join(d, "m.gguf"), "wb").write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv + b"\\0" * 64)
    try:
        Runner(Which.GGUF(quantized_model_id=d, quantized_filename="m.gguf", tok_model_id=None))
    except Exception as e:
        print("RAISED", type(e).__name__, isinstance(e, ValueError), e)
    """
)


def test_d1_reproducer_fails_fast_under_a_memory_limit(tmp_path):
    """The 100-byte 2^61-element file: a ModelLoadError in seconds, not a hang growing memory."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AGENTKIT_LOAD_PLUGINS": ""}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True,
                              timeout=90, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("Runner(...) on a hostile 100-byte GGUF did not return within 90 s")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "RAISED ModelLoadError True" in out and "'general.y' array of 2305843009213693952 elements" in out, out
