"""Fixtures of the speculative-decoding tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def always_speculate(monkeypatch):
    """Draft the most tokens every step (the adaptive planner is tested on its own)."""
    import agentkit.engine.speculative.verify as verify

    monkeypatch.setattr(verify, "plan_lengths", lambda rates, caps, *a, **k: list(caps))
