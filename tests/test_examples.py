"""The README's main job: examples/quickstart.py streams an answer from SmolLM2 (slow)."""

from __future__ import annotations

import json
import re
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


@pytest.mark.slow
def test_agent_tools_example_uses_a_tool(smollm2):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "agent_tools.py"), "Is it raining in London right now?"],
                         capture_output=True, text=True, timeout=300, cwd="/tmp")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[tool] get_weather(" in out.stdout and "London" in out.stdout
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("[session ")
    # the answer: the text after the last tool line, in words, using the result ("mild", 15 C)
    answer = "\n".join(lines[max(i for i, line in enumerate(lines) if line.startswith("[tool] ")) + 1:-1])
    assert re.search(r"[A-Za-z]{3,}", answer) and not re.search(r"tool[_-]?(call|response)|\{", answer), answer
    assert re.search(r"\bmild\b|\b15\b", answer), answer


@pytest.mark.slow
def test_persistent_agent_resumes_after_restart(smollm2, tmp_path):
    def run(*args):
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "persistent_agent.py"), "--store",
                              str(tmp_path / "store"), *args], capture_output=True, text=True, timeout=300, cwd="/tmp")
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    first = run("What is the weather in Oslo?")
    assert "[new session 'demo'" in first
    second = run("And in Rome?")
    assert "[resumed session 'demo'" in second
    saved = json.loads((tmp_path / "store" / "demo.json").read_text())
    users = [m["content"] for m in saved["messages"] if m["role"] == "user"]
    assert users == ["What is the weather in Oslo?", "And in Rome?"]
    assert "deleted: True" in run("--reset")
