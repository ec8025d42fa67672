"""The spare executor (a warm pool of one) on real sandboxed kernels: a session gets a started,
never-used kernel of its own; no state crosses sessions; the spare keeps the sandbox; it is reaped
after the idle TTL and at shutdown, also while it is being built, leaving no process behind."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from code_exec_support import RecordingExecutors, process_alive

from agentkit import CodeExecutionConfig
from agentkit.agent.context import ToolContext
from agentkit.api.requests import ChatCompletionRequest
from agentkit.config import RunnerConfig
from agentkit.file_store import FileStore
from agentkit.plugin_host import PluginHost
from agentkit.plugins.code_exec import ExecutorPool, ExecutorSpec, LocalExecutor
from agentkit.plugins.code_exec.request_tools import CodeExecPlugin
from agentkit.plugins.code_exec.sandbox import pids_of_uid, sandbox_disabled
from agentkit.plugins.code_exec.spare import Spare
from agentkit.sessions import Session


class Made:
    """A factory that remembers every executor it built (the spares included)."""

    def __init__(self, root) -> None:
        self.root, self.made, self.count = root, [], itertools.count()

    def __call__(self, spec: ExecutorSpec) -> LocalExecutor:
        self.made.append(LocalExecutor(spec, grace_s=1.0))
        return self.made[-1]

    def spec(self) -> ExecutorSpec:
        return ExecutorSpec(workdir=self.root / f"w{next(self.count)}", timeout_s=30)

    def leftovers(self) -> list[str]:
        """Kernels still alive, sandbox uids that still own processes, state dirs not deleted."""
        out = []
        for e in self.made:
            if process_alive(e.kernel_pid):
                out.append(f"kernel {e.kernel_pid}")
            if e.plan.uid is not None and pids_of_uid(e.plan.uid):
                out.append(f"uid {e.plan.uid}: {pids_of_uid(e.plan.uid)}")
            if e.state.exists():
                out.append(f"state {e.state}")
        return out



def test_a_new_session_gets_a_started_never_used_kernel_of_its_own(require_sandbox, tmp_path):
    made = Made(tmp_path)
    pool = ExecutorPool(made, spare=made.spec)
    try:
        first, first_spec = pool.claim("a")  # nothing built yet: started now in the background
        deadline = time.monotonic() + 60
        while first.kernel_pid is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process_alive(first.kernel_pid)  # before its first call
        assert first.execute("secret = 'from a'\nopen('a.txt', 'w').write('a')", 20).status == "ok"
        assert pool.wait_spare(60)
        spare = next(e for e in made.made if e is not first)
        spare_pid = spare.kernel_pid
        assert process_alive(spare_pid)  # started before any session asked for it
        second, second_spec = pool.claim("b")
        assert second is spare and second.kernel_pid == spare_pid and second_spec.workdir == spare.workdir
        assert pool.get("b", second_spec) is second and pool.get("a", first_spec) is first
        # nothing crosses sessions: variables, work directory, sandbox uid, kernel
        assert second.execute("secret", 10).exception.startswith("NameError")
        assert second.execute("import os\nos.listdir('.')", 10).result == "[]"
        assert first_spec.workdir != second_spec.workdir and first.plan.uid != second.plan.uid
        assert first.kernel_pid != second.kernel_pid
        assert pool.wait_spare(60)  # refilled after the claim, again a new executor
        third, _ = pool.claim("c")
        assert third not in (first, second) and third.plan.uid not in (first.plan.uid, second.plan.uid)
        with pytest.raises(ValueError, match="already has an executor"):
            pool.claim("a")
    finally:
        pool.close_all()
    assert made.leftovers() == []


def test_a_spare_keeps_the_sandbox(require_sandbox, tmp_path):
    if sandbox_disabled():
        pytest.skip("sabotage mode: the escape suite covers what isolation off changes")
    made = Made(tmp_path)
    pool = ExecutorPool(made, spare=made.spec)
    try:
        first, _ = pool.claim("warm-up")
        assert pool.wait_spare(60)
        spare = next(e for e in made.made if e is not first)
        executor, _ = pool.claim("s")
        assert executor is spare and executor.isolation.level == "full"
        checks = executor.execute(
            "import os, socket\nout = [os.getuid(), open('/proc/self/status').read().count('NoNewPrivs:\\t1')]\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); out.append('net')\n"
            "except OSError:\n    out.append('no net')\n"
            "try:\n    os.listdir('/root'); out.append('root home')\nexcept OSError:\n    out.append('denied')\nout", 20)
        assert checks.result == f"[{executor.plan.uid}, 1, 'no net', 'denied']", checks
    finally:
        pool.close_all()


def test_an_unclaimed_spare_is_closed_after_the_idle_ttl(require_sandbox, tmp_path):
    made = Made(tmp_path)
    pool = ExecutorPool(made, idle_ttl_s=0.5, reap_every_s=0.1, spare=made.spec)
    try:
        session, _ = pool.claim("a")
        assert pool.wait_spare(60)
        spare = next(e for e in made.made if e is not session)
        assert process_alive(spare.kernel_pid)
        deadline = time.monotonic() + 10
        while (pool.spare.ready or made.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pool.spare.ready and spare.closed and session.closed and made.leftovers() == []
        assert len(made.made) == 2  # an idle pool does not refill its spare
    finally:
        pool.close_all()


@pytest.mark.parametrize("when", ["ready", "while being built"])
def test_close_all_leaves_no_process_of_the_spare(require_sandbox, tmp_path, when):
    made = Made(tmp_path)
    pool = ExecutorPool(made, spare=made.spec)
    session, _ = pool.claim("a")  # starts building the spare
    session.execute("import subprocess\nkid = subprocess.Popen(['sleep', '60'])", 20)
    deadline = time.monotonic() + 30
    while len(made.made) < 2 and time.monotonic() < deadline:  # the spare's build has begun
        time.sleep(0.01)
    if when == "ready":
        assert pool.wait_spare(60)
    pool.close_all()
    assert len(made.made) == 2 and all(e.closed for e in made.made), made.made
    assert made.leftovers() == []
    pool.spare.fill()  # a closed pool builds no more spares
    assert not pool.spare.wait(1) and len(made.made) == 2


def test_a_failing_spare_falls_back_to_a_cold_start_that_raises_the_real_error(tmp_path):
    calls = []

    def factory(spec):
        calls.append(spec)
        raise RuntimeError(f"cannot build #{len(calls)}")

    spare = Spare(factory, lambda: ExecutorSpec(workdir=tmp_path))
    spare.fill()
    assert spare.take() is None and len(calls) == 1  # logged, not raised
    pool = ExecutorPool(factory, spare=lambda: ExecutorSpec(workdir=tmp_path))
    with pytest.raises(RuntimeError, match="cannot build"):
        pool.claim("s")
    pool.close_all()
    with pytest.raises(TypeError, match="callable"):
        ExecutorPool(spare="not callable")
    with pytest.raises(ValueError, match="spare=make_spec"):
        ExecutorPool().claim("s")


def test_the_runner_plugin_hands_each_new_session_a_spare_and_shutdown_reaps_all(require_sandbox):
    rec = RecordingExecutors()
    host = PluginHost.create([rec], entry_points=False)
    host.configure(RunnerConfig(code_execution_config=CodeExecutionConfig(),
                                extra={"code_exec": {"executor": "recording"}}))
    outs = []
    for session in ("s1", "s2"):
        request = ChatCompletionRequest(model="x", messages=[{"role": "user", "content": "hi"}],
                                        enable_code_execution=True)
        context = ToolContext(request=request, session=Session.new(session), config=host.config, files=FileStore(),
                              turn=1, max_seq_len=4096, count_tokens=lambda t: len(t) // 4 + 1, output_tokens=1024)
        tools = host.request_tools(context)
        if session == "s1":
            plugin_pool = next(p for p in host.pm.get_plugins() if isinstance(p, CodeExecPlugin))._pool
            deadline = time.monotonic() + 60
            while len(rec.made) < 2 and time.monotonic() < deadline:  # s1 starts, then the spare fills
                time.sleep(0.02)
            assert plugin_pool.wait_spare(60)  # s2 finds the spare ready
            started = {e.workdir: e.kernel_pid for e in rec.made}
        code = "import os\nprev = globals().get('mark')\nmark = 1\n(os.getpid(), os.getcwd(), prev)"
        outs.append(json.loads(tools["mistralrs_execute_python"].fn("x", {"code": code}).content))
    pids = [eval(out["result"])[0] for out in outs]  # noqa: S307 - our own repr of a tuple
    assert started[Path(outs[1]["working_directory"])] == pids[1]  # s2 runs on the kernel started before it came
    assert eval(outs[1]["result"])[2] is None and pids[0] != pids[1]  # noqa: S307
    assert outs[0]["working_directory"] != outs[1]["working_directory"]
    host.shutdown(None)
    assert len(rec.made) == 3  # s1 cold, s2 the spare, and the refill
    for executor in rec.made:
        assert executor.closed and not process_alive(executor.kernel_pid) and not executor.workdir.exists()
        assert executor.plan.uid is None or pids_of_uid(executor.plan.uid) == []
