"""What the sandbox claims: the plan and report for each situation, without starting kernels."""

from __future__ import annotations

import os

import pytest

from agentkit.api.agent_options import SandboxPolicy
from agentkit.api.enums import NetworkMode
from agentkit.plugins.code_exec import SandboxUnavailableError, sandbox
from agentkit.plugins.code_exec.sandbox import HostFacts, plan_sandbox

FULL = HostFacts(root=True, landlock_abi=7, netns=True, mountns=True, python_ok=True)
NOT_ROOT = HostFacts(root=False, landlock_abi=7, netns=False, mountns=False, python_ok=None,
                     why={"netns": "Operation not permitted"})


def _plan(monkeypatch, tmp_path, facts, policy=None):
    monkeypatch.delenv("AGENTKIT_SANDBOX", raising=False)
    monkeypatch.setattr(sandbox, "detect", lambda python: facts)
    return plan_sandbox(policy, "/opt/py/bin/python", tmp_path / "wd", tmp_path / "state", timeout_s=900)


def test_full_isolation_is_reported_as_applied(monkeypatch, tmp_path):
    plan = _plan(monkeypatch, tmp_path, FULL)
    assert plan.report.level == "full" and plan.uid >= sandbox.UID_BASE
    assert plan.plan["netns"] and plan.plan["loopback"] and plan.plan["hide_dirs"] and plan.plan["no_new_privs"]
    assert plan.plan["rlimits"]["cpu"] == 901  # raised to at least the timeout
    assert str(tmp_path / "wd") in plan.plan["landlock"]["rw"]
    text = plan.report.describe()
    assert "Landlock ABI 7" in text and "unprivileged uid" in text and "not applied" not in text
    assert text.endswith("; not used: seccomp, cgroups, a pid namespace")
    assert set(plan.env) >= {"PATH", "HOME"} and "HF_HOME" not in plan.env


def test_no_network_mode_denies_tcp_too(monkeypatch, tmp_path):
    plan = _plan(monkeypatch, tmp_path, FULL, SandboxPolicy(network=NetworkMode.NoNetwork))
    assert plan.plan["netns"] and not plan.plan["loopback"] and plan.plan["deny_tcp"]
    full = _plan(monkeypatch, tmp_path, FULL, SandboxPolicy(network=NetworkMode.Full))
    assert not full.plan["netns"] and "host network" in full.report.describe()


def test_missing_pieces_degrade_explicitly(monkeypatch, tmp_path):
    plan = _plan(monkeypatch, tmp_path, NOT_ROOT)
    assert plan.report.level == "partial" and plan.uid is None
    text = plan.report.describe()
    assert "not applied" in text and "network namespace (needs root)" in text and "not enforced for root" in text


def test_strict_policy_raises_when_anything_is_missing(monkeypatch, tmp_path):
    with pytest.raises(SandboxUnavailableError, match="network namespace"):
        _plan(monkeypatch, tmp_path, NOT_ROOT, SandboxPolicy(strict=True))
    assert _plan(monkeypatch, tmp_path, FULL, SandboxPolicy(strict=True)).report.level == "full"


def test_the_off_switch_reports_no_isolation(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTKIT_SANDBOX", "off")
    plan = plan_sandbox(None, "/opt/py/bin/python", tmp_path / "wd", tmp_path / "state")
    assert plan.report.level == "none" and plan.prefix == () and plan.report.describe().startswith("no isolation")
    with pytest.raises(SandboxUnavailableError, match="AGENTKIT_SANDBOX=off"):
        plan_sandbox(SandboxPolicy(strict=True), "/opt/py/bin/python", tmp_path / "wd", tmp_path / "state")


def test_extra_env_passes_named_host_variables_and_pairs(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTKIT_PASS_ME", "yes")
    plan = _plan(monkeypatch, tmp_path, FULL, SandboxPolicy(extra_env=["AGENTKIT_PASS_ME", "K=v"]))
    assert plan.env["AGENTKIT_PASS_ME"] == "yes" and plan.env["K"] == "v"


def test_kernel_python_prefers_an_explicit_path(monkeypatch):
    assert sandbox.kernel_python("/some/python") == "/some/python"
    monkeypatch.setenv("AGENTKIT_KERNEL_PYTHON", "/bin/sh")  # any executable
    assert sandbox.kernel_python("python3") == "/bin/sh" and sandbox.kernel_python(None) == "/bin/sh"


def test_denials_get_a_one_line_sandbox_hint(monkeypatch, tmp_path):
    report = _plan(monkeypatch, tmp_path, FULL).report
    net = sandbox.violation_hint(report, "OSError: [Errno 101] Network is unreachable")
    files = sandbox.violation_hint(report, "PermissionError: [Errno 13] Permission denied: '/etc/x'")
    memory = sandbox.violation_hint(report, "MemoryError: ")
    assert net == "[sandbox] network access is disabled in this sandbox"
    assert files.startswith("[sandbox] only the working directory is writable") and "2048 MiB" in memory
    assert sandbox.violation_hint(report, "ZeroDivisionError: division by zero") is None
    monkeypatch.setenv("AGENTKIT_SANDBOX", "off")
    off = plan_sandbox(None, "/opt/py/bin/python", tmp_path / "wd", tmp_path / "state").report
    assert sandbox.violation_hint(off, "PermissionError: [Errno 13] Permission denied") is None


def test_a_held_uid_is_never_handed_out_twice(monkeypatch):
    picks = iter([5, 5, 6])
    monkeypatch.setattr(sandbox.secrets, "randbelow", lambda n: next(picks))
    first_uid, first_lock = sandbox.new_uid()
    second_uid, second_lock = sandbox.new_uid()
    try:
        assert (first_uid, second_uid) == (sandbox.UID_BASE + 6, sandbox.UID_BASE + 7)
    finally:
        os.close(first_lock)
        os.close(second_lock)
