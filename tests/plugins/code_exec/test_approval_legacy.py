"""The legacy `CodeExecutionConfig.approval_callback(dict) -> bool` as `Tool.approve`."""

from __future__ import annotations

import json

import pytest

from agentkit.api.agent_options import AgentToolApproval, AgentToolMetadata
from agentkit.api.enums import AgentPermission, AgentToolKind, AgentToolSource, CodeExecutionPermission
from agentkit.plugins.code_exec.approval import legacy_approver, tool_permission

META = AgentToolMetadata(AgentToolSource.BuiltIn, AgentToolKind.CodeExecution, "Python code")


def _approval(args):
    return AgentToolApproval.for_call("sess-1", 0, META, json.dumps(args))


def test_the_callback_gets_the_mistralrs_dict_and_true_approves():
    seen = []
    approve = legacy_approver(lambda d: seen.append(d) or True, lambda: "/work/dir")
    approval = _approval({"code": "print(1)", "outputs": ["a.png"]})
    assert approve(approval) is True
    assert seen == [{"approval_id": approval.approval_id, "session_id": "sess-1", "code": "print(1)",
                     "outputs": ["a.png"], "working_directory": "/work/dir"}]
    assert approval.approval_id.startswith("appr_")


@pytest.mark.parametrize("answer", [False, "yes", 1, None])
def test_anything_but_true_denies(answer):
    assert legacy_approver(lambda d: answer, lambda: "/w")(_approval({"code": "1"})) is False


def test_an_exception_in_the_callback_denies():
    def boom(d):
        raise RuntimeError("no")

    assert legacy_approver(boom, lambda: "/w")(_approval({"code": "1"})) is False


def test_permissions_become_agent_permissions():
    assert tool_permission(CodeExecutionPermission.Ask) is AgentPermission.Ask
    assert tool_permission("deny") is AgentPermission.Deny
    assert tool_permission(None) is None
    with pytest.raises(ValueError):
        tool_permission("sometimes")
