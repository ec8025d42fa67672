"""Executor behaviour on real kernels: state, reset, capture, input(), kernel death, the pool's
idle reaping and close_all leaving no process behind, and the plugin registration."""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest
from code_exec_support import process_alive

from agentkit.api.agent_options import SandboxPolicy
from agentkit.api.enums import NetworkMode
from agentkit.plugins.code_exec import ExecutorPool, ExecutorSpec, LocalExecutor
from agentkit.plugins.code_exec.sandbox import pids_of_uid


def test_state_persists_within_an_executor_and_not_across_executors(make_executor):
    first, second = make_executor(), make_executor()
    assert first.execute("x = 41", 10).status == "ok"
    assert first.execute("x + 1", 10).result == "42"
    other = second.execute("x", 10)
    assert other.status == "error" and other.exception.startswith("NameError")
    assert first.workdir != second.workdir and first.plan.uid != second.plan.uid


def test_reset_gives_a_fresh_interpreter_and_keeps_the_workdir(make_executor):
    executor = make_executor()
    executor.execute("y = 1\nopen('kept.txt', 'w').write('still')", 10)
    old_pid = executor.kernel_pid
    executor.reset()
    assert executor.kernel_pid != old_pid and not process_alive(old_pid)
    assert executor.execute("y", 10).exception.startswith("NameError")
    assert executor.execute("open('kept.txt').read()", 10).result == "'still'"


def test_capture_of_streams_result_and_traceback(make_executor):
    executor = make_executor()
    ok = executor.execute("import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n'last'", 10)
    assert (ok.status, ok.stdout, ok.stderr, ok.result, ok.exception) == ("ok", "to out\n", "to err\n", "'last'", None)
    assert ok.execution_time_ms > 0 and ok.isolation == executor.isolation.describe()
    bad = executor.execute("def f():\n    return 1 / 0\nf()", 10)
    assert bad.status == "error" and bad.exception.startswith("ZeroDivisionError: division by zero")
    assert "return 1 / 0" in bad.exception and "\x1b[" not in bad.exception


def test_input_raises_instead_of_hanging(make_executor):
    started = time.monotonic()
    result = make_executor().execute("input('your name? ')", 10)
    assert result.status == "error" and result.exception.startswith("StdinNotImplementedError")
    assert time.monotonic() - started < 5


def test_a_dying_kernel_is_replaced_and_reported(make_executor):
    executor = make_executor()
    result = executor.execute("import os\nos._exit(3)", 10)
    assert result.status == "killed" and "died (exit" in result.stderr, result
    assert executor.execute("2 + 2", 10).result == "4"


def test_shell_status_exit_code_and_timeout(make_executor):
    executor = make_executor()
    failed = executor.shell(["echo partial", "exit 7"], 10)
    assert (failed.status, failed.exit_code, failed.stdout, failed.timed_out) == ("error", 7, "partial\n", False)
    started = time.monotonic()
    slow = executor.shell(["sleep 30"], 0.5)
    assert (slow.status, slow.timed_out, slow.exit_code) == ("timeout", True, None)
    assert time.monotonic() - started < 3


def test_pool_reuses_per_session_and_reaps_idle_executors(require_sandbox, tmp_path):
    pool = ExecutorPool(idle_ttl_s=0.3, reap_every_s=0.1)
    try:
        a = pool.get("a", ExecutorSpec(workdir=tmp_path / "a"))
        assert pool.get("a", ExecutorSpec(workdir=tmp_path / "other")) is a
        b = pool.get("b", ExecutorSpec(workdir=tmp_path / "b"))
        assert b is not a
        b.close()
        assert pool.get("b", ExecutorSpec(workdir=tmp_path / "b")) is not b  # closed by hand: replaced
        busy = a.execute("import subprocess, time\nchild = subprocess.Popen(['sleep', '60'])\ntime.sleep(0.8)", 20)
        assert busy.status == "ok" and "a" in pool  # busy for longer than the TTL, yet not reaped
        pid, uid = a.kernel_pid, a.plan.uid
        assert len(pids_of_uid(uid)) >= 2  # the kernel and its child
        deadline = time.monotonic() + 5
        while ("a" in pool or process_alive(pid) or pids_of_uid(uid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "a" not in pool and not process_alive(pid) and pids_of_uid(uid) == []
    finally:
        pool.close_all()


def test_close_all_leaves_no_process_behind(require_sandbox, tmp_path):
    pool = ExecutorPool(idle_ttl_s=3600)
    executors = [pool.get(name, ExecutorSpec(workdir=tmp_path / name)) for name in ("s1", "s2")]
    for executor in executors:
        executor.execute("import subprocess, os\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(2)]\n"
                         "if os.fork() == 0:\n    os.setsid()\n    import time; time.sleep(60)", 20)
    watched = [(e.kernel_pid, e.plan.uid, e.state) for e in executors]
    assert all(len(pids_of_uid(uid)) >= 4 for _, uid, _ in watched)
    pool.close_all()
    assert len(pool) == 0
    for pid, uid, state in watched:
        assert not process_alive(pid) and pids_of_uid(uid) == [] and not state.exists()
    with pytest.raises(RuntimeError, match="closed"):
        executors[0].execute("1", 5)


def test_the_builtin_plugin_registers_the_local_factory():
    from agentkit.plugin_host import PluginHost

    factories = PluginHost.create(entry_points=False).code_executors()
    assert factories["local"].__name__ == "local_executor_factory"


def test_bad_input_is_rejected_with_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="workdir"):
        ExecutorSpec(workdir=3)
    with pytest.raises(TypeError, match="extra_env"):
        ExecutorSpec(workdir=tmp_path, extra_env={"A": 1})
    with pytest.raises(TypeError, match="ExecutorSpec"):
        LocalExecutor("not a spec")
    with pytest.raises(ValueError, match="idle_ttl_s"):
        ExecutorPool(idle_ttl_s=0)
    with pytest.raises(ValueError, match="session id"):
        ExecutorPool().get("", ExecutorSpec(workdir=tmp_path))
    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd"))
    try:
        with pytest.raises(TypeError, match="code must be a str"):
            executor.execute(123, 5)
        with pytest.raises(ValueError, match="timeout_s"):
            executor.execute("1", 0)
        with pytest.raises(TypeError, match="list of strings"):
            executor.shell("ls", 5)
    finally:
        executor.close()
    assert os.path.isdir(tmp_path / "wd")


CONNECT = "python3 -c \"import socket; socket.create_connection(('{host}', {port}), timeout=2); print('CONNECTED')\""


@pytest.mark.parametrize("mode", [NetworkMode.NoNetwork, NetworkMode.Full])
def test_network_modes_from_the_shell(require_sandbox, tmp_path, mode):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd", policy=SandboxPolicy(network=mode)))
    try:
        to_host = executor.shell([CONNECT.format(host="127.0.0.1", port=server.getsockname()[1])], 10)
        inside = executor.shell(["python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                                 "s.listen(1); socket.create_connection(s.getsockname(), timeout=2); print('CONNECTED')\""], 10)
    finally:
        executor.close()
        server.close()
    if mode == NetworkMode.Full:  # the host network, as asked: both work
        assert "CONNECTED" in to_host.stdout and "CONNECTED" in inside.stdout, (to_host, inside)
    else:  # no interface at all, and Landlock denies TCP: not even a private loopback
        assert "CONNECTED" not in to_host.stdout + inside.stdout, (to_host, inside)
        assert "unreachable" in to_host.stderr or "Permission denied" in to_host.stderr, to_host.stderr


def test_degraded_mode_says_so_and_still_confines(require_sandbox, tmp_path):
    import sys

    from agentkit.plugins.code_exec.sandbox import detect

    if detect(sys.executable).python_ok:
        pytest.skip("this interpreter is executable by an unprivileged uid: nothing degrades")
    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd", python_path=sys.executable))
    try:
        report = executor.isolation
        assert report.level == "partial" and "uid 0 with no capabilities" in report.describe()
        assert "not applied: unprivileged uid" in report.describe()
        caps = executor.execute("[l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]", 30)
        assert caps.result == "'0000000000000000'", caps
        home = executor.execute("import os\nos.listdir('/root')", 10)
        assert home.status == "error" and home.exception.startswith("PermissionError"), home
    finally:
        executor.close()


def test_sandbox_denials_are_explained_in_the_result(require_sandbox, tmp_path):
    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd"))
    try:
        result = executor.shell(["echo x > /etc/agentkit-denied"], 10)
        code = executor.execute("import socket\nsocket.getaddrinfo('pypi.org', 443)", 20)
    finally:
        executor.close()
    assert result.status == "error" and "[sandbox] only the working directory is writable" in result.stderr
    assert code.status == "error" and code.exception.endswith("[sandbox] network access is disabled in this sandbox")


def test_files_the_host_puts_in_the_workdir_become_the_sandboxs(require_sandbox, tmp_path):
    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd"))
    try:
        (executor.workdir / "input.csv").write_text("a,b\n")
        (executor.workdir / "skills" / "demo").mkdir(parents=True)
        (executor.workdir / "skills" / "demo" / "run.sh").write_text("echo skill\n")
        os.symlink("/etc/passwd", executor.workdir / "link")
        os.lchown(executor.workdir / "link", 0, 0)
        result = executor.shell(["echo 1,2 >> input.csv", "echo more >> skills/demo/run.sh", "cat input.csv"], 10)
        assert result.status == "success" and result.stdout == "a,b\n1,2\n", result
        assert os.stat("/etc/passwd").st_uid == 0  # the symlink was not followed
    finally:
        executor.close()


BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end:\n    pass\n'burnt'"


def _burner(tmp_path) -> LocalExecutor:
    """An executor with a 2 CPU-second budget (the kernel's own start uses ~0.2 s of it)."""
    return LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd", policy=SandboxPolicy(max_cpu_secs=2), timeout_s=0.5),
                         grace_s=1.0)


def test_the_cpu_limit_is_per_call_however_long_the_session(require_sandbox, tmp_path):
    from agentkit.plugins.code_exec.sandbox import can_renew_limits, sandbox_disabled

    if sandbox_disabled() or not can_renew_limits():
        pytest.skip("renewing the kernel's CPU limit needs the sandbox and CAP_SYS_RESOURCE (prlimit)")
    executor = _burner(tmp_path)
    try:
        assert "cpu 2 s per call" in executor.isolation.describe()
        for _ in range(2):  # 2.4 CPU-seconds in all, each call within its budget
            result = executor.execute(BURN.format(s=1.2), 60)
            assert (result.status, result.result) == ("ok", "'burnt'"), result
        pid = executor.kernel_pid
        over = executor.execute(BURN.format(s=3.5), 60)  # one call over its budget (2 to 3 s) still dies
        assert over.status == "killed" and "died" in over.stderr and executor.kernel_pid != pid, over
    finally:
        executor.close()


def test_without_cap_sys_resource_the_cpu_limit_is_per_interpreter_and_says_so(require_sandbox, tmp_path, monkeypatch):
    from agentkit.plugins.code_exec.sandbox import can_renew_limits, sandbox_disabled

    if sandbox_disabled() or can_renew_limits():
        pytest.skip("this host renews the CPU limit per call (test above)")
    executor = _burner(tmp_path)
    try:
        assert "cpu 2 s per interpreter in total" in executor.isolation.describe()
        first = executor.execute(BURN.format(s=1.2), 60)
        assert first.status == "ok", first
        spent = executor.execute(BURN.format(s=1.2), 60)  # the interpreter's second 1.2 s passes 2 s
        assert spent.status == "killed" and "died" in spent.stderr, spent
        assert executor.execute("1 + 1", 20).result == "2"  # a fresh interpreter, a fresh budget
        # where the capability exists, each call moves the limit to CPU used + 1 + budget
        calls = []
        monkeypatch.setattr(resource, "prlimit", lambda *args: calls.append(args))
        executor.plan.plan["cpu_per_call"] = True
        assert executor.execute("2 + 2", 20).result == "4"
        assert len(calls) == 1 and calls[0][:2] == (executor.kernel_pid, resource.RLIMIT_CPU), calls
        assert calls[0][2][0] == calls[0][2][1] >= 3, calls  # a fresh kernel: 0 s used + 1 + 2 s
    finally:
        executor.close()


def test_a_kernel_that_cannot_start_raises_the_same_clear_error_on_every_call(require_sandbox, tmp_path):
    from agentkit.plugins.code_exec.kernel import KernelStartError

    executor = LocalExecutor(ExecutorSpec(workdir=tmp_path / "wd", python_path="/bin/false"))
    try:
        for _ in range(2):  # the failed start is not left half-made: the next call tries again
            with pytest.raises(KernelStartError, match="kernel"):
                executor.execute("1", 10)
    finally:
        executor.close()
