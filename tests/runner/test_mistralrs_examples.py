"""mistral.rs's example scripts run to the end on agentkit with only the import changed.

The scripts (`mistralrs_examples/`, same calls and arguments as mistral.rs's files of the same
name) are copied together into a temporary folder and run there as `python <name>.py`, as a user
would in `examples/python/` (so `gguf.py`, `regex.py` and `lark.py` shadow packages of those
names). They load models by hub id from a temporary offline Hugging Face cache that holds
stand-ins under those ids:

- `microsoft/Phi-3.5-mini-instruct`: a tiny random Phi-3 (the same architecture);
- `google/gemma-4-E4B-it`: a tiny random Llama. transformers knows Gemma 4, but agentkit cannot
  run it yet (the transformers fallback trips over its per-layer `head_dim`, and the real
  checkpoint is multimodal), and online calibration needs the native engine's ISQ layers;
- `TheBloke/Mistral-7B-Instruct-v0.1-GGUF` / `mistral-7b-instruct-v0.1.Q4_K_M.gguf`: the SmolLM2
  GGUF, with SmolLM2's tokenizer (from the GGUF) under `mistralai/Mistral-7B-Instruct-v0.1`;
- `HuggingFaceTB/SmolLM2-135M-Instruct-GGUF`: the SmolLM2 GGUF itself, for the code-execution and
  shell scripts, which mistral.rs runs on `Qwen/Qwen3-4B` (their only other change is the import).
- `NousResearch/Hermes-3-Llama-3.1-8B`: SmolLM2 (a Llama) as safetensors, its weights read from
  the GGUF by agentkit's reader, with the GGUF's tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit.testing import tiny_model

SCRIPTS = Path(__file__).parent / "mistralrs_examples"
REV = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(hub: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in the hub cache layout (refs/main -> snapshots/<rev>)."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    snap = repo / "snapshots" / REV
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    hub = home / "hub"
    tiny_model(_cache_repo(hub, "microsoft/Phi-3.5-mini-instruct"), "phi3")
    tiny_model(_cache_repo(hub, "google/gemma-4-E4B-it"), "llama")
    return home


def _add_smollm2(hf_home: Path, smollm2: tuple[str, str]) -> None:
    hub = hf_home / "hub"
    gguf_dir = _cache_repo(hub, "TheBloke/Mistral-7B-Instruct-v0.1-GGUF")
    target = gguf_dir / "mistral-7b-instruct-v0.1.Q4_K_M.gguf"
    if not target.exists():
        target.symlink_to(os.path.join(*smollm2))
    tok_dir = _cache_repo(hub, "mistralai/Mistral-7B-Instruct-v0.1")
    if not (tok_dir / "tokenizer.json").exists():
        from agentkit.engine.tokenizer import load_tokenizer

        # the GGUF's own tokenizer, converted once and cached by agentkit
        load_tokenizer(None, gguf_path=os.path.join(*smollm2)).hf.save_pretrained(tok_dir)


def _add_smollm2_plain(hf_home: Path, smollm2: tuple[str, str], repo_id: str) -> None:
    """SmolLM2 under `repo_id` as a plain safetensors checkpoint (config, weights, tokenizer)."""
    snap = _cache_repo(hf_home / "hub", repo_id)
    if (snap / "model.safetensors").exists():
        return
    import torch
    from safetensors.torch import save_file

    from agentkit.engine.loading.gguf import read_gguf
    from agentkit.engine.tokenizer import load_tokenizer

    gguf = os.path.join(*smollm2)
    contents = read_gguf([gguf], dtype=torch.bfloat16, progress=False)
    contents.config.save_pretrained(snap)
    save_file({k: v.contiguous() for k, v in contents.state_dict.items()}, str(snap / "model.safetensors"))
    load_tokenizer(None, gguf_path=gguf).hf.save_pretrained(snap)


def _run(name: str, hf_home: Path, tmp_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    for script in SCRIPTS.glob("*.py"):  # all together, as in mistral.rs's examples/python
        shutil.copy(script, tmp_path / script.name)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "AGENTKIT_LOAD_PLUGINS": "", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, f"{name}.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240, input=stdin)


def _check(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("Usage(") or "Collecting on" in proc.stdout, proc.stdout[-2000:]
    return lines


@pytest.mark.parametrize("name", ["json_schema", "regex", "lark", "lark_llg", "llguidance"])
def test_grammar_examples_run_to_the_end(name, hf_home, tmp_path):
    lines = _check(_run(name, hf_home, tmp_path))
    assert "completion_tokens=" in lines[-1]


def test_online_calibration_example_runs_to_the_end(hf_home, tmp_path):
    proc = _run("online_calibration", hf_home, tmp_path)
    _check(proc)
    assert "Collecting on 14/14 layers," in proc.stdout  # 2 tiny layers x 7 linear modules
    rows = int(proc.stdout.split("layers, ")[1].split(" token rows")[0])
    assert rows > 0
    assert (tmp_path / "traffic.cimatrix").stat().st_size > 0


@pytest.mark.slow
def test_gguf_example_runs_to_the_end_despite_its_name(hf_home, tmp_path, smollm2):
    _add_smollm2(hf_home, smollm2)
    proc = _run("gguf", hf_home, tmp_path)
    lines = _check(proc)
    assert "circular import" not in proc.stderr
    assert len(proc.stdout) > 100 and "completion_tokens=" in lines[-1]


def _add_smollm2_gguf(hf_home: Path, smollm2: tuple[str, str]) -> None:
    snapshot = _cache_repo(hf_home / "hub", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    target = snapshot / smollm2[1]
    if not target.exists():
        target.symlink_to(os.path.join(*smollm2))
    # these scripts set no max_tokens: like a hub repo, the stand-in has a generation_config.json,
    # greedy and short, so an answer ends in seconds on a shared 2-core machine
    (snapshot / "generation_config.json").write_text(json.dumps({"do_sample": False, "max_new_tokens": 48}))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["code_execution", "code_execution_approval", "shell", "shell_skills"])
def test_code_execution_and_shell_examples_run_to_the_end(name, hf_home, tmp_path, smollm2):
    _add_smollm2_gguf(hf_home, smollm2)
    # the approval script asks on stdin: answer "always" to every question
    proc = _run(name, hf_home, tmp_path, stdin="a\n" * 20)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_custom_search_example_runs_to_the_end_on_smollm2(hf_home, tmp_path, smollm2):
    """examples/python/custom_search.py: enable_search + a search_callback over the local files."""
    _add_smollm2_plain(hf_home, smollm2, "NousResearch/Hermes-3-Llama-3.1-8B")
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "demo"\n')
    proc = _run("custom_search", hf_home, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
