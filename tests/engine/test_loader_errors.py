"""Tests for damaged or mislabelled safetensors checkpoints: ModelLoadError naming the file.

Reliability defect D12: safetensors' own `SafetensorError` is neither a `ValueError` nor names the
file; a pickle-only directory must say that pickle weights were found and are never loaded.
"""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from agentkit import Runner, Which
from agentkit.engine.loading.loader import load_plain
from agentkit.errors import ModelLoadError


def _copy(tiny_llama: str, tmp_path) -> str:
    d = str(tmp_path / "model")
    shutil.copytree(tiny_llama, d)
    return d


def test_truncated_safetensors_through_runner(tiny_llama, tmp_path):
    d = _copy(tiny_llama, tmp_path)
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ModelLoadError) as info:
        Runner(Which.Plain(model_id=d))
    assert isinstance(info.value, ValueError)
    assert path in str(info.value) and "truncated or corrupt" in str(info.value)


@pytest.mark.parametrize("cut", [4, 20])
def test_header_cut_short(tiny_llama, tmp_path, cut):
    d = _copy(tiny_llama, tmp_path)
    path = os.path.join(d, "model.safetensors")
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    with pytest.raises(ModelLoadError, match="truncated or corrupt") as info:
        load_plain(d, dtype=torch.float32, progress=False)
    assert path in str(info.value)


def test_pickle_named_safetensors(tiny_llama, tmp_path):
    d = _copy(tiny_llama, tmp_path)
    path = os.path.join(d, "model.safetensors")
    with open(path, "wb") as fh:
        pickle.dump({"weights": [1.0, 2.0]}, fh, protocol=4)
    with pytest.raises(ModelLoadError, match="is a pickle") as info:
        load_plain(d, dtype=torch.float32, progress=False)
    assert path in str(info.value) and "never unpickles" in str(info.value)
    torch.save({"w": torch.zeros(2)}, path)  # torch.save's zip container
    with pytest.raises(ModelLoadError, match="is a pickle"):
        load_plain(d, dtype=torch.float32, progress=False)


def test_pickle_only_directory_without_config(tmp_path):
    d = tmp_path / "binonly"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"not a real pickle; must never be unpickled")
    with pytest.raises(ModelLoadError) as info:
        Runner(Which.Plain(model_id=str(d)))
    message = str(info.value)
    assert "pytorch_model.bin" in message and "pickle weights" in message
    assert "only *.safetensors" in message and "GGUF" in message


def test_read_json_is_the_one_reader_with_the_callers_error_class(tmp_path):
    from agentkit.engine.loading.hub import read_json

    good, bad, missing = tmp_path / "a.json", tmp_path / "b.json", str(tmp_path / "none.json")
    good.write_text('{"x": 1}')
    bad.write_text("{not json")
    assert read_json(str(good)) == {"x": 1}
    assert read_json(missing, missing_ok=True) is None
    with pytest.raises(ModelLoadError, match="could not read JSON file"):
        read_json(missing)
    with pytest.raises(ModelLoadError, match=r"b\.json.*is not valid JSON"):
        read_json(str(bad))
    with pytest.raises(ValueError, match="chat template file .* is not valid JSON") as err:
        read_json(str(bad), error=ValueError, what="chat template file")
    assert type(err.value) is ValueError
