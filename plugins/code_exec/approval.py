"""Permissions of the code and shell tools, and the legacy approval callback (runner-api.md §2.6, §1.8).

Scope:
- `tool_permission()`: `CodeExecutionConfig.permission` / `ShellConfig.permission` as the
  `AgentPermission` a `Tool` carries (the loop takes the strictest of it and the request's).
- `legacy_approver()`: `CodeExecutionConfig.approval_callback(dict) -> bool` adapted to
  `Tool.approve(AgentToolApproval) -> bool`. The dict has `approval_id`, `session_id`, `code`,
  `outputs` and `working_directory`; an exception or a return value that is not a bool denies.

Non-goals: deciding when to ask (the agent loop), the request's `agent_approval_callback`
(the loop calls it first; `Tool.approve` is used only when the request has none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentkit.api.agent_options import AgentToolApproval
from agentkit.api.enums import AgentPermission, coerce_permission

__all__ = ["legacy_approver", "tool_permission"]

log = logging.getLogger("agentkit.plugins.code_exec")


def tool_permission(value: Any) -> AgentPermission | None:
    """A config's `permission` (AgentPermission, CodeExecutionPermission or its name) as AgentPermission.

    None stays None (the loop reads that as Auto). Raises ValueError/TypeError for anything else.
    """
    return None if value is None else coerce_permission(value, AgentPermission)


def legacy_approver(callback: Callable[[dict[str, Any]], Any],
                    working_directory: Callable[[], str]) -> Callable[[AgentToolApproval], bool]:
    """`Tool.approve` calling the legacy `callback(dict) -> bool`; only `True` approves.

    `working_directory()` gives the session's work directory at approval time.
    """
    if not callable(callback):
        raise TypeError(f"CodeExecutionConfig.approval_callback must be callable, got {type(callback).__name__}")

    def approve(approval: AgentToolApproval) -> bool:
        try:
            args = approval.arguments()
        except ValueError:
            args = {}
        outputs = args.get("outputs") if isinstance(args, dict) else None
        request = {
            "approval_id": approval.approval_id,
            "session_id": approval.session_id,
            "code": approval.code,
            "outputs": list(outputs) if isinstance(outputs, list) else [],
            "working_directory": working_directory(),
        }
        try:
            decision = callback(request)
        except Exception as exc:
            log.warning("code execution approval_callback raised %s: %s; the call is denied",
                        type(exc).__name__, exc)
            return False
        if not isinstance(decision, bool):
            log.warning("code execution approval_callback returned %r, expected a bool; the call is denied",
                        decision)
            return False
        return decision

    return approve

