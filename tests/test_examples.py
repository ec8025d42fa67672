"""The README's main job: examples/quickstart.py streams an answer from SmolLM2 (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_streams_an_answer(smollm2):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "What is the capital of France?"],
                         capture_output=True, text=True, timeout=300, cwd="/tmp")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "> What is the capital of France?"
    assert "Paris" in out.stdout
    assert "tok/s" in lines[-1]
