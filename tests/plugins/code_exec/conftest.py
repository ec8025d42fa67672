"""Fixtures for the code-execution tests: real sandboxed kernels, skipped only when this machine
cannot apply the sandbox (and never in sabotage mode, `AGENTKIT_SANDBOX=off`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agentkit.api.agent_options import SandboxPolicy
from agentkit.plugins.code_exec import ExecutorSpec, LocalExecutor, sandbox_disabled
from agentkit.plugins.code_exec.sandbox import detect, kernel_python
from agentkit.plugins.code_exec.spare import Spare

SECRET_VAR = "AGENTKIT_ESCAPE_SECRET"
ESCAPE_POLICY = SandboxPolicy(max_memory_mb=1024, max_procs=64, max_open_fds=256, max_file_sz_mb=64)


def sandbox_skip_reason() -> str | None:
    """Why the full sandbox cannot be tested here, or None."""
    if sandbox_disabled():
        return None
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError as exc:
        return f"jupyter_client/ipykernel not installed ({exc}): pip install -e '.[code]'"
    python = kernel_python(None)
    facts = detect(python)
    if not facts.root:
        return "the sandbox needs root (network/mount namespaces and the uid drop)"
    if not facts.netns or not facts.mountns:
        return f"unshare of network/mount namespaces failed here: {facts.why}"
    if facts.landlock_abi < 1:
        return "this kernel has no Landlock"
    if not facts.python_ok:
        return (f"{python} is not executable by an unprivileged uid: run .ci/run's kernel-venv step "
                "(python3 -m venv /opt/agentkit/kernel-venv + ipykernel) or set AGENTKIT_KERNEL_PYTHON")
    return None


@pytest.fixture(scope="session")
def require_sandbox() -> None:
    reason = sandbox_skip_reason()
    if reason:
        pytest.skip(reason)


def _make(policy: SandboxPolicy | None, grace_s: float) -> tuple[LocalExecutor, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="agentkit-test-wd-"))
    executor = LocalExecutor(ExecutorSpec(workdir=workdir, policy=policy, timeout_s=30), grace_s=grace_s)
    executor.start()
    return executor, workdir


@pytest.fixture(scope="module")
def escape_executor(require_sandbox):
    """One sandboxed executor for the escape suite (1 GiB memory cap, 1 s grace); a host secret is
    in this process's environment when it starts. It comes the way the Runner serves sessions by
    default: built and started in the background as a spare, then handed out (spare.py)."""
    os.environ[SECRET_VAR] = "s3cret-from-the-host"
    spare = Spare(lambda spec: LocalExecutor(spec, grace_s=1.0),
                  lambda: ExecutorSpec(workdir=Path(tempfile.mkdtemp(prefix="agentkit-test-wd-")),
                                       policy=ESCAPE_POLICY, timeout_s=30))
    spare.fill()
    taken = spare.take()
    spare.close()
    assert taken is not None, "the spare executor did not start (see the log)"
    executor = taken[0]
    yield executor
    os.environ.pop(SECRET_VAR, None)
    executor.close()
    shutil.rmtree(executor.workdir, ignore_errors=True)


@pytest.fixture
def make_executor(require_sandbox):
    """Factory for executors closed at the end of the test."""
    made: list[tuple[LocalExecutor, Path]] = []

    def make(policy: SandboxPolicy | None = None, grace_s: float = 1.0) -> LocalExecutor:
        made.append(_make(policy, grace_s))
        return made[-1][0]

    yield make
    for executor, workdir in made:
        executor.close()
        shutil.rmtree(workdir, ignore_errors=True)

