"""Helpers shared by the code-execution plugin's tests (on the test path via `pythonpath`).

Scope: `process_alive(pid)` (a zombie counts as gone) and `RecordingExecutors`, a plugin that
registers the local executor as "recording" and remembers every executor it built.
Non-goals: fixtures (they live in tests/plugins/code_exec/conftest.py).
"""

from __future__ import annotations

from typing import Any

from agentkit import hookimpl


def process_alive(pid: int | None) -> bool:
    """True while `pid` exists and is not a zombie."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


class RecordingExecutors:
    """Registers "recording": the local executor, remembered (sessions and spares alike)."""

    def __init__(self) -> None:
        self.made: list[Any] = []

    @hookimpl
    def register_code_executors(self, register: Any) -> None:
        from agentkit.plugins.code_exec import LocalExecutor

        def factory(spec: Any) -> Any:
            self.made.append(LocalExecutor(spec))
            return self.made[-1]

        register("recording", factory)
