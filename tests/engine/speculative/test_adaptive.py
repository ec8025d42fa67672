"""The adaptive draft-length policy against timing noise, with an injected cost model (no clocks):
slow samples do not switch speculation off, a sequence always probes before it is left plain,
plain sequences probe again, and text that never matches stays (nearly) plain."""

from __future__ import annotations

import random

import pytest

from agentkit.engine.speculative.adaptive import Acceptance, CostModel, ProbePolicy, plan_lengths, with_probes

TRUE = {1: 0.020, 2: 0.023, 3: 0.025, 4: 0.027, 6: 0.030, 8: 0.034, 11: 0.040, 16: 0.055}


def true_cost() -> CostModel:
    c = CostModel()
    for n, t in TRUE.items():
        c.observe(n, t)
    return c


def drive(cost: CostModel, accept, steps: int = 200, cap: int = 10, noise=None) -> list[int]:
    """Run one sequence's planning loop: `accept(k)` says how many of k drafts are kept; every
    step's time is fed back to `cost` (`noise(rows)` adds to it). Returns the k of every step."""
    acc = Acceptance()
    ks = []
    for _ in range(steps):
        k = with_probes(plan_lengths([acc.rate], [cap], 1, cost), [acc], [cap])[0]
        ks.append(k)
        rows = 1 + k
        cost.observe(rows, true_cost().time(rows) + (noise(rows) if noise else 0.0))
        if k:
            acc.observe(k, accept(k))
        else:
            acc.idle()
    return ks


def test_a_burst_of_slow_samples_moves_no_estimate():
    c = true_cost()
    for _ in range(8):
        c.observe(4, TRUE[4])
    for _ in range(5):
        c.observe(4, 0.5)  # another process stole the CPU for five of the last eight steps
    assert c.time(4) == pytest.approx(TRUE[4])
    c.set(4, 0.5)  # the only sample is slow: believed
    assert c.time(4) == 0.5


def test_copying_speculates_even_when_calibration_saw_only_slow_long_steps():
    # calibration under load: every step of 2+ rows looked 5x slower than one row
    cost = CostModel()
    cost.observe(1, TRUE[1])
    for n in (2, 4, 8, 12):
        cost.observe(n, 5 * TRUE[1] * n)
    assert plan_lengths([0.95], [10], 1, cost) == [0]  # the planner alone would never draft again
    ks = drive(cost, accept=lambda k: k)  # a copy task: every draft is kept
    assert ks[0] == 1  # a first probe
    assert max(ks[:12]) >= 6  # kept drafts grow (and re-measure the longer steps)
    assert sum(k == 0 for k in ks) <= 5 and sum(ks[-50:]) >= 50 * 8


def test_copying_survives_random_slow_samples():
    rng = random.Random(0)

    def noise(rows: int) -> float:
        return rng.uniform(0.02, 0.1) if rng.random() < 0.3 else 0.0

    ks = drive(true_cost(), accept=lambda k: k, noise=noise)
    assert sum(k == 0 for k in ks) <= 5
    assert sum(ks) / len(ks) >= 6


def test_text_that_never_matches_probes_rarely():
    policy = ProbePolicy()
    ks = drive(true_cost(), accept=lambda k: 0, steps=320)
    probes = [i for i, k in enumerate(ks) if k]
    assert all(k <= policy.probe_k for k in ks)
    assert len(probes) <= policy.min_probes + 320 // policy.reprobe_every + 1
    assert len(probes) >= 320 // (policy.reprobe_every + 1)  # but it does probe again, periodically
    assert probes[: policy.min_probes] == list(range(policy.min_probes))  # never off before min_probes


def test_probes_respect_the_cap():
    a = Acceptance()
    assert with_probes([0], [a], [0]) == [0]  # no room: no probe
    a.observe(4, 4)
    assert with_probes([2], [a], [3]) == [3]  # kept whole: grow, within the cap
    assert with_probes([7], [a], [10]) == [7]  # the planner already asks for more


def test_a_full_batch_is_left_to_the_planner():
    fresh, whole = Acceptance(), Acceptance()
    whole.observe(4, 4)
    policy = ProbePolicy()
    assert with_probes([0, 0], [fresh, whole], [8, 8], policy, base_rows=policy.max_rows) == [1, 5]
    assert with_probes([0, 0], [fresh, whole], [8, 8], policy, base_rows=policy.max_rows + 1) == [0, 0]
