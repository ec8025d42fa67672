"""The code tools through a Runner and its agent loop: files on responses, find_file, sessions, approvals.

The tiny random model cannot write code, so each test forces a call to the code tool (a request
schema of the same name keeps its arguments short) and a wrapper around `agent_execute_tool`
replaces the arguments the model wrote with the test's code, after the loop approved the call.
Everything else (the plugin's tools, the kernel, the loop, permissions, files) is real.
"""

from __future__ import annotations

import base64
import json
import os
import shutil

import pytest
from code_exec_support import RecordingExecutors

from agentkit import (
    AgentPermission,
    AgentToolApprovalDecision,
    ChatCompletionRequest,
    CodeExecutionConfig,
    InputFile,
    RequestedFile,
    Runner,
    ShellConfig,
    Which,
    hookimpl,
)

pytest.importorskip("jupyter_client", reason="the code tools need jupyter_client: pip install -e '.[code]'")
pytest.importorskip("ipykernel", reason="the code tools need ipykernel: pip install -e '.[code]'")

PY = "mistralrs_execute_python"
SHELL = "mistralrs_shell"


def _short_schema(name: str, arg: str) -> str:
    """A request schema for a built-in tool that keeps the model's argument to a few characters."""
    return json.dumps({"type": "function", "function": {
        "name": name, "description": "run", "strict": True,
        "parameters": {"type": "object", "properties": {arg: {"type": "string", "maxLength": 4}},
                       "required": [arg], "additionalProperties": False}}})


class Script:
    """Replaces the arguments of each approved call with the next scripted ones."""

    def __init__(self) -> None:
        self.queue: list[dict] = []
        self.ran: list[dict] = []

    @hookimpl(wrapper=True)
    def agent_execute_tool(self, call, session, tool):
        if self.queue:
            call.arguments = json.dumps(self.queue.pop(0))
        self.ran.append(json.loads(call.arguments))
        return (yield)


@pytest.fixture(scope="module")
def tiny_long(tiny_llama, tmp_path_factory):
    """The tiny model with an 8192-token context: the code tools' descriptions alone pass 512 tokens."""
    path = tmp_path_factory.mktemp("tiny-long") / "model"
    shutil.copytree(tiny_llama, path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def script():
    return Script()


@pytest.fixture(scope="module")
def runner(tiny_long, script):
    r = Runner(Which.Plain(tiny_long), progress=False, plugins=[script],
               code_execution_config=CodeExecutionConfig(timeout_secs=30), shell_config=ShellConfig(timeout_secs=30))
    yield r
    r.shutdown()


def run_code(runner, script, code, *, shell=False, **kw):
    """One agentic turn whose single tool call runs `code` (Python, or shell commands)."""
    name, arg = (SHELL, "x") if shell else (PY, "code")
    script.queue[:] = [{"commands": code} if shell else {"code": code}]
    script.ran.clear()
    req = dict(model="x", messages=[{"role": "user", "content": "Compute it."}], max_tokens=96, max_tool_rounds=1,
               tool_schemas=[_short_schema(name, arg)], tool_choice={"type": "function", "function": {"name": name}},
               enable_code_execution=not shell, enable_shell=shell)
    req.update(kw)
    return runner.send_chat_completion_request(ChatCompletionRequest(**req))


def result_of(resp):
    assert len(resp.agentic_tool_calls) == 1, resp.agentic_tool_calls
    return json.loads(resp.agentic_tool_calls[0].result_content)


def test_a_figure_is_a_file_on_the_response_and_find_file_returns_its_body(runner, script):
    resp = run_code(runner, script, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()\n6 * 7")
    out = result_of(resp)
    assert out["status"] == "ok" and out["result"] == "42" and out["images_generated"] == 1
    assert resp.files is not None and len(resp.files) == 1
    fig = resp.files[0]
    assert fig.is_image() and (fig.source.tool, fig.source.round, fig.source.turn) == (PY, 0, 1)
    assert resp.agentic_tool_calls[0].file_ids == [fig.id] and len(resp.agentic_tool_calls[0].result_images_base64) == 1
    found = runner.find_file(fig.id)
    assert found is not None and base64.b64decode(found.data_base64)[:4] == b"\x89PNG"


def test_state_persists_across_turns_of_a_session_and_not_across_sessions(runner, script):
    first = run_code(runner, script, "total = 40", session_id="sess-persist")
    assert result_of(first)["status"] == "ok"
    again = run_code(runner, script, "total + 2", session_id="sess-persist")
    assert result_of(again)["result"] == "42"
    other = run_code(runner, script, "total", session_id="sess-other")
    assert "NameError" in result_of(other)["exception"]


def test_a_declared_file_never_written_is_an_error_placeholder_on_the_response(runner, script):
    resp = run_code(runner, script, "1 + 1", files=[RequestedFile("report.md", format="md")])
    placeholder = [f for f in resp.files or [] if f.name == "report.md"]
    assert len(placeholder) == 1 and placeholder[0].is_error() and placeholder[0].source.tool == PY


def test_input_files_reach_the_shell_and_the_file_tools_are_offered(runner, script):
    upload = InputFile.from_text("notes.txt", "alpha\nbeta\n")
    resp = run_code(runner, script, ["grep -c a notes.txt"], shell=True, input_files=[upload])
    out = result_of(resp)
    assert out["stdout"].strip() == "2" and out["status"] == "success"
    assert runner.find_file(upload.id).text == "alpha\nbeta\n"


def test_deny_permission_never_runs_the_code(tiny_long):
    script = Script()
    with Runner(Which.Plain(tiny_long), progress=False, plugins=[script],
                code_execution_config=CodeExecutionConfig(permission="deny")) as r:
        resp = run_code(r, script, "open('ran.txt', 'w').write('x')")
        rec = resp.agentic_tool_calls[0]
        assert json.loads(rec.result_content) == {"status": "denied", "exception": "Python code was denied by policy."}
        assert script.ran == []


def test_ask_uses_the_legacy_callback_and_a_false_answer_denies(tiny_long):
    script, seen = Script(), []

    def legacy(request):
        seen.append(request)
        return len(seen) > 1  # deny the first call, approve the second

    with Runner(Which.Plain(tiny_long), progress=False, plugins=[script],
                code_execution_config=CodeExecutionConfig(permission="ask", approval_callback=legacy)) as r:
        denied = run_code(r, script, "'ran'")
        assert json.loads(denied.agentic_tool_calls[0].result_content)["status"] == "denied" and script.ran == []
        assert set(seen[0]) == {"approval_id", "session_id", "code", "outputs", "working_directory"}
        assert seen[0]["session_id"] == denied.session_id and seen[0]["approval_id"].startswith("appr_")
        approved = run_code(r, script, "'ran'")
        assert result_of(approved)["result"] == "'ran'"


def test_the_request_callback_wins_over_the_legacy_one_and_its_message_is_the_result(tiny_long):
    script, legacy_seen, asked = Script(), [], []

    def ask(approval):
        asked.append(approval)
        return AgentToolApprovalDecision.deny("The user said no.")

    with Runner(Which.Plain(tiny_long), progress=False, plugins=[script],
                code_execution_config=CodeExecutionConfig(approval_callback=lambda d: legacy_seen.append(d) or True)) as r:
        resp = run_code(r, script, "'ran'", agent_permission=AgentPermission.Ask, agent_approval_callback=ask)
        assert json.loads(resp.agentic_tool_calls[0].result_content) == {"status": "denied",
                                                                         "exception": "The user said no."}
        assert legacy_seen == [] and script.ran == []
        assert asked[0].tool.label == "Python code" and asked[0].tool.kind.name == "CodeExecution"


def test_a_huge_print_fits_the_loop_budget_so_the_loop_neither_cuts_nor_spills_it(runner, script):
    resp = run_code(runner, script, "print('x' * 300_000)")
    rec = resp.agentic_tool_calls[0]
    out = json.loads(rec.result_content)  # whole JSON: the loop's own head/tail cut did not fire
    assert out["full_stdout_file"].startswith(".outputs/") and "characters truncated" in out["stdout"]
    assert not any(f.name.endswith("_output_r0.txt") for f in resp.files or [])  # no spilled copy



def test_runner_shutdown_leaves_no_kernel_behind_spares_included(tiny_long):
    from agentkit.plugins.code_exec.sandbox import pids_of_uid

    script, rec = Script(), RecordingExecutors()
    r = Runner(Which.Plain(tiny_long), progress=False, plugins=[script, rec],
               code_execution_config=CodeExecutionConfig(timeout_secs=30),
               plugin_options={"code_exec": {"executor": "recording"}})
    try:
        pids = [int(result_of(run_code(r, script, "import os\nos.getpid()", session_id=s))["result"])
                for s in ("shut-a", "shut-b")]
        assert pids[0] != pids[1] and len(rec.made) >= 2  # the next spare may still be starting
    finally:
        r.shutdown()
    assert rec.made and all(e.closed for e in rec.made)
    for executor in rec.made:
        assert not executor.workdir.exists() and not executor.state.exists()
        assert executor.plan.uid is None or pids_of_uid(executor.plan.uid) == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[-1][0] == "Z"
