"""Run the code-execution escape suite in a child pytest and count its verdicts.

Scope: `run_escape_suite(repo, sabotage=...)` runs `tests/plugins/code_exec/test_escape.py` in a
fresh interpreter (with `AGENTKIT_SANDBOX=off` for the sabotage run) and returns an
`EscapeCounts`: how many `test_deny_*`, `test_allow_*` and `test_limit_*` tests passed, failed or
were skipped. Used by the sabotage test and by `bench/code_exec.py`.

Non-goals: running anything in-process (the sabotage mode must not leak into the caller).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EscapeCounts", "run_escape_suite"]

SUITE = "tests/plugins/code_exec/test_escape.py"


@dataclass
class EscapeCounts:
    """Outcomes by test-name prefix ("deny", "allow", "limit"): {"passed": [...], "failed": [...], "skipped": [...]}."""

    sabotage: bool
    outcomes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    returncode: int = 0

    def names(self, kind: str, outcome: str) -> list[str]:
        return self.outcomes.get(kind, {}).get(outcome, [])

    def count(self, kind: str, outcome: str) -> int:
        return len(self.names(kind, outcome))

    def total(self, kind: str) -> int:
        return sum(len(v) for v in self.outcomes.get(kind, {}).values())


def run_escape_suite(repo: Path, *, sabotage: bool, timeout_s: float = 300.0, slow: bool = True) -> EscapeCounts:
    """Run the suite in a child pytest; `slow=False` deselects the slow cases."""
    env = dict(os.environ)
    env.pop("AGENTKIT_SANDBOX", None)
    if sabotage:
        env["AGENTKIT_SANDBOX"] = "off"
    with tempfile.TemporaryDirectory(prefix="agentkit-escape-") as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", SUITE]
        if not slow:
            cmd += ["-m", "not slow"]
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout_s)
        if not report.exists():
            raise RuntimeError(f"the escape suite did not run: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        counts = EscapeCounts(sabotage=sabotage, returncode=proc.returncode)
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "")
            kind = name.removeprefix("test_").split("_", 1)[0]
            if case.find("skipped") is not None:
                outcome = "skipped"
            elif case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            else:
                outcome = "passed"
            counts.outcomes.setdefault(kind, {}).setdefault(outcome, []).append(name)
    return counts
