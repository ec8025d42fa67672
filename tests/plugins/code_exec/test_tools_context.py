"""The code and shell tools on real kernels, driven through `agent_request_tools` with a real `ToolContext`.

Each test builds the turn context the agent loop builds (request, session, file store, turn) and
calls the offered tools' `fn` directly, so what the code does is known (the loop-level tests in
test_tools_runner.py go through a Runner).
"""

from __future__ import annotations

import base64
import json

import pytest

from agentkit.agent.context import ToolContext
from agentkit.api.agent_options import CodeExecutionConfig, ShellConfig, ShellSkillMount
from agentkit.api.files import InputFile, RequestedFile
from agentkit.api.requests import ChatCompletionRequest
from agentkit.config import RunnerConfig
from agentkit.file_store import FileStore
from agentkit.plugin_host import PluginHost
from agentkit.plugins.code_exec import CodeExecPlugin
from agentkit.sessions import Session

pytest.importorskip("jupyter_client", reason="the code tools need jupyter_client: pip install -e '.[code]'")
pytest.importorskip("ipykernel", reason="the code tools need ipykernel: pip install -e '.[code]'")

PY, RESET, SHELL, SURFACE = ("mistralrs_execute_python", "mistralrs_reset_python_session", "mistralrs_shell",
                             "mistralrs_surface_outputs")


def count_tokens(text: str) -> int:
    return max(len(text.split()), (len(text) + 3) // 4)


@pytest.fixture(scope="module")
def plugin():
    p = CodeExecPlugin()
    p.runner_configure(RunnerConfig(code_execution_config=CodeExecutionConfig(timeout_secs=20),
                                    shell_config=ShellConfig(timeout_secs=20)))
    yield p
    p.runner_shutdown()


@pytest.fixture(scope="module")
def store():
    return FileStore()


def turn(plugin, store, session_id, output_tokens=2048, turn_no=1, **req):
    """One turn's context and its tools, as the agent loop builds them."""
    request = ChatCompletionRequest(model="x", messages=[{"role": "user", "content": "hi"}], **req)
    ctx = ToolContext(request=request, session=Session.new(session_id), config=None, files=store, turn=turn_no,
                      max_seq_len=8192, count_tokens=count_tokens, output_tokens=output_tokens)
    ctx.store_uploads(list(request.input_files or []))
    ctx.code_executors = PluginHost.create(entry_points=False).code_executors
    tools = {t.name: t for t in plugin.agent_request_tools(ctx) or []}
    return ctx, tools


def call(tools, name, **args):
    result = tools[name].fn(name, args)
    return result, json.loads(result.content)


def test_tools_are_offered_only_when_asked_for(plugin, store):
    _, none = turn(plugin, store, "s-none")
    assert none == {}
    _, code = turn(plugin, store, "s-code", enable_code_execution=True)
    assert sorted(code) == [PY, RESET]
    _, both = turn(plugin, store, "s-code", enable_code_execution=True, enable_shell=True)
    assert sorted(both) == [PY, RESET, SHELL, SURFACE]
    desc = both[PY].description
    assert "persists" in desc and "last expression" in desc and "20 seconds" in desc and "PNG" in desc
    iso = call(both, PY, code="1")[1]["isolation"]  # what the executor reports it applied
    assert iso and f"Isolation: {iso}." in desc and f"Isolation: {iso}." in both[SHELL].description


def test_state_persists_across_calls_and_turns_of_a_session_and_not_across_sessions(plugin, store):
    _, tools = turn(plugin, store, "s-a", enable_code_execution=True)
    res, out = call(tools, PY, code="x = 41")
    assert res.status == "ok" and out["status"] == "ok"
    _, out = call(tools, PY, code="x + 1")
    assert out["result"] == "42" and out["working_directory"]
    _, later = turn(plugin, store, "s-a", turn_no=2, enable_code_execution=True)  # next turn, same session
    assert call(later, PY, code="x * 2")[1]["result"] == "82"
    _, other = turn(plugin, store, "s-b", enable_code_execution=True)
    res, out = call(other, PY, code="x")
    assert res.status == "error" and out["status"] == "error" and "NameError" in out["exception"]
    call(later, RESET)
    assert "NameError" in call(later, PY, code="x")[1]["exception"]


def test_a_figure_becomes_a_png_file_with_its_source_and_the_store_holds_the_body(plugin, store):
    ctx, tools = turn(plugin, store, "s-fig", turn_no=3, enable_code_execution=True)
    ctx.round = 2
    res, out = call(tools, PY, code="import matplotlib.pyplot as plt\nplt.plot([1, 4, 9]); plt.show()")
    assert out["images_generated"] == 1 and len(res.images_base64) == 1 and len(res.file_ids) == 1
    file = store.get(res.file_ids[0])
    assert file.is_image() and file.mime_type == "image/png" and file.name.endswith(".png")
    assert (file.source.tool, file.source.round, file.source.turn) == (PY, 2, 3)
    assert base64.b64decode(file.data_base64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert ctx.produced == [file] and out["files"][0]["id"] == file.id


def test_outputs_and_declared_files_surface_and_a_missing_declared_file_is_an_error_placeholder(plugin, store):
    ctx, tools = turn(plugin, store, "s-out", enable_code_execution=True,
                      files=[RequestedFile("report.csv"), RequestedFile("summary.txt", description="a summary")])
    assert "report.csv" in tools[PY].description and "summary.txt (a summary)" in tools[PY].description
    res, out = call(tools, PY, code="open('report.csv', 'w').write('a,b\\n1,2\\n')\n"
                                    "open('plot_data.txt', 'w').write('xyz')", outputs=["plot_data.txt"])
    names = {f.name: f for f in (store.get(i) for i in res.file_ids)}
    assert names["plot_data.txt"].text == "xyz" and names["report.csv"].text == "a,b\n1,2\n"
    assert names["summary.txt"].is_error() and "not been written" in names["summary.txt"].error_message
    assert {e["name"] for e in out["files"]} == {"plot_data.txt", "report.csv", "summary.txt"}
    # the same files unchanged are not surfaced again, the placeholder not repeated
    res, out = call(tools, PY, code="1")
    assert res.file_ids == []
    res, _ = call(tools, PY, code="open('summary.txt', 'w').write('done')")
    assert [store.get(i).text for i in res.file_ids] == ["done"]
    # outputs that are missing or outside the work directory are error placeholders too
    res, out = call(tools, PY, code="1", outputs=["nope.txt", "../../etc/passwd"])
    assert [e.get("error") is not None for e in out["files"]] == [True, True]


def test_input_files_are_visible_to_code_and_shell(plugin, store):
    data = InputFile.from_text("data.csv", "n\n1\n2\n3\n")
    ctx, tools = turn(plugin, store, "s-in", enable_code_execution=True, enable_shell=True, input_files=[data])
    assert any("data.csv" in n for n in ctx.notes)
    assert call(tools, PY, code="sum(int(x) for x in open('data.csv').read().split()[1:])")[1]["result"] == "6"
    res, out = call(tools, SHELL, commands=["wc -l < data.csv"])
    assert res.status == "ok" and out["stdout"].strip() == "4" and out["exit_code"] == 0
    assert res.file_ids == []  # the input file did not change: nothing surfaces


def test_shell_surfaces_new_and_changed_files_but_not_hidden_ones(plugin, store):
    _, tools = turn(plugin, store, "s-sh", enable_shell=True)
    res, out = call(tools, SHELL, commands=["echo one > a.txt", "mkdir -p d && echo two > d/b.txt",
                                            "echo h > .hidden"])
    assert out["status"] == "success" and sorted(e["name"] for e in out["files"]) == ["a.txt", "d/b.txt"]
    res, out = call(tools, SHELL, commands=["echo more >> a.txt"])
    assert [e["name"] for e in out["files"]] == ["a.txt"]
    res, out = call(tools, SHELL, commands=["exit 3"])
    assert res.status == "error" and out["status"] == "error" and out["exit_code"] == 3
    res, out = call(tools, SURFACE, outputs=["d/b.txt"])
    assert out["status"] == "success" and store.get(res.file_ids[0]).text == "two\n"


def test_a_huge_print_is_capped_with_the_full_text_in_a_named_file(plugin, store):
    ctx, tools = turn(plugin, store, "s-big", output_tokens=300, enable_code_execution=True, enable_shell=True)
    res, out = call(tools, PY, code="print('\\n'.join(f'row {i}' for i in range(200_000)))")
    assert count_tokens(res.content) <= 300
    assert out["stdout"].startswith("row 0\n") and out["stdout"].rstrip().endswith("row 199999")
    assert "characters truncated" in out["stdout"] and out["full_stdout_file"] in out["stdout"]
    full = call(tools, PY, code=f"len(open({out['full_stdout_file']!r}).read())")[1]["result"]
    assert int(full) == len("\n".join(f"row {i}" for i in range(200_000))) + 1
    res, out = call(tools, SHELL, commands=["seq 1 100000"], max_output_length=50)
    assert len(out["stdout"]) < 200 and out["stdout"].startswith("1\n") and "full_stdout_file" in out


def test_bad_arguments_are_errors_the_model_sees(plugin, store):
    _, tools = turn(plugin, store, "s-bad", enable_code_execution=True, enable_shell=True)
    with pytest.raises(ValueError, match="`code` must be a non-empty string"):
        tools[PY].fn(PY, {"code": ""})
    with pytest.raises(ValueError, match="`commands` must be a list of strings"):
        tools[SHELL].fn(SHELL, {"commands": "ls"})
    with pytest.raises(ValueError, match="`timeout_ms` must be a positive integer"):
        tools[SHELL].fn(SHELL, {"commands": ["ls"], "timeout_ms": 0})


def test_skills_are_readable_but_not_changeable_by_the_sandboxed_shell(plugin, store, tmp_path):
    src = tmp_path / "auditor"
    src.mkdir()
    (src / "SKILL.md").write_text("# Auditor\n")
    skill = ShellSkillMount(name="auditor", description="Audits invoices.", source_path=str(src))
    ctx, tools = turn(plugin, store, "s-skill", shell_skills=[skill])
    assert any("- auditor: Audits invoices." in note for note in ctx.notes)
    res, out = call(tools, SHELL, commands=["cat skills/auditor/SKILL.md"])
    assert out["stdout"] == "# Auditor\n" and res.file_ids == []
    if "unprivileged uid" not in out["isolation"]:
        pytest.skip(f"the shell runs without a uid of its own here ({out['isolation'][:80]}...): "
                    "file modes cannot stop it")
    for attempt in ("echo x >> skills/auditor/SKILL.md", "chmod u+w skills/auditor/SKILL.md",
                    "rm -f skills/auditor/SKILL.md", "touch skills/auditor/new.md", "mkdir skills/other",
                    "mv skills/auditor skills/moved"):
        res, out = call(tools, SHELL, commands=[attempt])
        assert out["exit_code"] != 0, (attempt, out)
    assert call(tools, SHELL, commands=["cat skills/auditor/SKILL.md"])[1]["stdout"] == "# Auditor\n"
