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


def test_evaluate_through_a_ticked_cell_is_the_deployed_loop_and_a_refused_command_is_ignored():
    """TickedCell (the collector's and bench/vgps.py's deployed path) gives what run_ticked gives on the same
    reference; a command the gate refuses (a jump) is counted and ignored: the robot keeps the gate's last output."""
    from dexstack.evaluation.ticked import TickedCell
    from dexstack.policies.tracking.env import evaluate
    from dexstack.policies.tracking.references import TaskSpec, make_reference

    ref = make_reference(TaskSpec("push", "t_push", push_m=(0.0, 0.03), speed=2.0), D)
    cell = TickedCell()
    result = evaluate(load_policy("replay", D, reference=ref), [ref], cell, D)[0]
    trace = run_ticked(load_policy("replay", D, reference=ref), ref, cell)
    assert result.success == trace.success
    assert result.max_position_error_m == pytest.approx(trace.max_position_error_m, abs=1e-9)

    cell.reset(ref.q_at(0.0), ref.object_pose_at(0.0))
    q0 = cell.observe()[0]
    cell.command(q0[:7] + 4.0, None, 0.05)  # 4 rad in one step: beyond arm_max_step_rad (3) and the limits
    assert cell.refusals == 1 and "refused" in cell.reasons[0]
    cell.advance(0.05)
    assert np.max(np.abs(cell.observe()[0][:7] - q0[:7])) < 0.01
