"""The code_exec plugin's wiring: executor choice by name, shutdown, options and their errors."""

from __future__ import annotations

import json

import pytest
from code_exec_support import RecordingExecutors, process_alive

from agentkit import CodeExecutionConfig, Runner, ShellConfig, Which
from agentkit.agent.context import ToolContext
from agentkit.api.requests import ChatCompletionRequest
from agentkit.config import RunnerConfig
from agentkit.errors import ConfigError
from agentkit.file_store import FileStore
from agentkit.plugin_host import PluginHost
from agentkit.sessions import Session

pytest.importorskip("jupyter_client", reason="the code tools need jupyter_client: pip install -e '.[code]'")



def _context(host, session_id="s1", **req):
    request = ChatCompletionRequest(model="x", messages=[{"role": "user", "content": "hi"}], **req)
    return ToolContext(request=request, session=Session.new(session_id), config=host.config, files=FileStore(),
                       turn=1, max_seq_len=4096, count_tokens=lambda t: len(t) // 4 + 1, output_tokens=1024)


def _host(*plugins, **config):
    host = PluginHost.create(list(plugins), entry_points=False)
    host.configure(RunnerConfig(**config))
    return host


def test_the_executor_named_in_the_options_runs_the_code_and_shutdown_closes_it():
    rec = RecordingExecutors()
    host = _host(rec, code_execution_config=CodeExecutionConfig(),
                 extra={"code_exec": {"executor": "recording", "spare": False}})  # test_spare.py: with one
    tools = host.request_tools(_context(host, enable_code_execution=True))
    out = json.loads(tools["mistralrs_execute_python"].fn("mistralrs_execute_python", {"code": "import os; os.getpid()"}).content)
    assert out["status"] == "ok" and len(rec.made) == 1
    executor = rec.made[0]
    # the description and the result say exactly what the executor reports it applied
    line = executor.isolation.describe()
    assert f"Isolation: {line}." in tools["mistralrs_execute_python"].description and out["isolation"] == line
    pid, workdir = executor.kernel_pid, executor.workdir
    assert pid is not None and process_alive(pid) and workdir.is_dir() and workdir.name.startswith("mistralrs-code-")
    host.shutdown(None)
    assert not process_alive(pid) and not workdir.exists()


def test_an_unknown_executor_name_leaves_the_tools_out_and_says_why():
    host = _host(code_execution_config=CodeExecutionConfig(), extra={"code_exec": {"executor": "e2b"}})
    ctx = _context(host, enable_code_execution=True)
    assert host.request_tools(ctx) == {}
    assert any("'e2b' is not registered" in note and "'local'" in note for note in ctx.notes)
    host.shutdown(None)


def test_a_tool_whose_runner_option_is_missing_is_not_offered_and_the_log_says_how_to_enable_it(caplog):
    host = _host(shell_config=ShellConfig())
    for _ in range(2):
        ctx = _context(host, enable_code_execution=True)
        assert host.request_tools(ctx) == {} and ctx.notes == []
    warned = [r.getMessage() for r in caplog.records if "code_execution_config=CodeExecutionConfig" in r.getMessage()]
    assert len(warned) == 1  # once per Runner
    assert sorted(host.request_tools(_context(host, enable_code_execution=True, enable_shell=True))) == [
        "mistralrs_shell", "mistralrs_surface_outputs"]
    host.shutdown(None)


def test_a_configured_working_directory_is_shared_and_kept(tmp_path):
    host = _host(code_execution_config=CodeExecutionConfig(working_directory=str(tmp_path)))
    for session in ("a", "b"):
        tools = host.request_tools(_context(host, session, enable_code_execution=True))
        out = json.loads(tools["mistralrs_execute_python"].fn("x", {"code": f"open('{session}.txt', 'w').write('1')"}).content)
        assert out["working_directory"] == str(tmp_path.resolve())
    host.shutdown(None)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(plugin_options={"code_exec": {"idle_ttl": 5}}), "unknown option"),
    (dict(plugin_options={"code_exec": {"idle_ttl_s": 0}}), "idle_ttl_s.*positive"),
    (dict(plugin_options={"code_exec": {"executor": ""}}), "executor name"),
    (dict(plugin_options={"code_exec": {"spare": "yes"}}), "spare.*True or False"),
    (dict(code_execution_config=CodeExecutionConfig(working_directory="/tmp/a"),
          shell_config=ShellConfig(working_directory="/tmp/b")), "different working_directory"),
])
def test_bad_options_fail_when_the_runner_is_built(tiny_llama, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Runner(Which.Plain(tiny_llama), progress=False, **kwargs)
