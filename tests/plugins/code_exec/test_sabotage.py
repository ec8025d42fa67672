"""Sabotage mode: the escape suite with isolation switched off (`AGENTKIT_SANDBOX=off`) must see
every `test_deny_*` fail and every `test_allow_*` / `test_limit_*` pass, proving that the deny
tests can fail and that they fail only because of the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.testing.escape_suite import run_escape_suite

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_sabotage_every_deny_test_fails_and_every_allow_test_passes():
    pytest.importorskip("ipykernel", reason="needs ipykernel: pip install -e '.[code]'")
    counts = run_escape_suite(ROOT, sabotage=True)
    assert counts.total("deny") >= 15 and counts.total("allow") >= 7, counts.outcomes
    assert counts.names("deny", "passed") == [], "deny tests that pass without the sandbox prove nothing"
    assert counts.names("allow", "failed") == [] and counts.names("limit", "failed") == [], counts.outcomes
    skipped = counts.names("deny", "skipped")
    assert all("dns" in n or "public" in n for n in skipped), skipped  # only for lack of a host network
