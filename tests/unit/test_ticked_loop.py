"""The deployed command loop replayed in-process (dexstack/evaluation/ticked.py), the gate fed every tick."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.evaluation.ticked import run_ticked
from dexstack.policies import load_policy, load_reference, reference_path
from dexstack.robot import load_description

D = load_description("panda_allegro")


def test_a_reference_at_the_hand_limits_passes_the_gate_unclamped_and_is_held_after_its_end():
    """Issue 17 (b) end to end: the lift reference closes the hand onto its joint limits; the runtime's targets are
    inside the gate's command limits, so the gate never clamps them (deployed runs logged a clamp every tick)."""
    lift = load_reference(reference_path("lift"), D)
    limits = D.limit_arrays()
    assert np.any(lift.q_rad[:, 7:] >= limits["upper"][7:] - 0.02)  # really at the limits
    trace = run_ticked(load_policy("replay", D), lift, hold_s=0.5)
    assert len(trace.t_s) == pytest.approx((lift.duration_s + 0.5) / 0.05, abs=1)
    assert not any("clamped" in reason for reason in trace.counts), trace.counts
    # The gate's output converges to what was commanded once the motion stops (the filter lags while moving).
    np.testing.assert_allclose(trace.gated[-1], trace.commanded[-1], atol=2e-3)
    assert np.max(np.abs(trace.gated[-1][:7] - trace.measured[-1][:7])) < 0.01
    t_first = trace.first_gate_change(0.05)
    assert t_first is not None and t_first < lift.duration_s  # it moved fast enough for the filter to lag
