"""Deployed-path scoring (the in-process metric on the policy's timeline) and the sim's object placement."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.evaluation.scoring import (
    EpisodeRecord,
    ScoringConfig,
    intervention_note,
    object_pose_coverage,
    realtime_factor,
    score_episode,
    summarize,
)
from dexstack.policies import load_reference, reference_path
from dexstack.robot import load_description
from dexstack.sim import SimCell
from dexstack.sim.placement import object_start_pose

D = load_description("panda_allegro")
CONFIG = ScoringConfig(control_period_s=0.05, hold_s=2.0)


@pytest.fixture(scope="module")
def lift():
    return load_reference(reference_path("lift"), D)


def record_following(ref, start_s: float, object_fn, until_s: float, rate_hz: float = 250.0) -> EpisodeRecord:
    """Ground truth from ``object_fn(t_ref)`` on a clock where the policy's first command arrives at ``start_s``."""
    rec = EpisodeRecord(reference=ref.name)
    for t in np.arange(0.0, until_s, 1.0 / rate_hz):
        rec.gt_t_s.append(start_s + t)
        rec.gt_pose.append(object_fn(t))
    rec.command_t_s = list(start_s + np.arange(0.0, ref.duration_s + 2.0, 0.05))
    rec.command_wall_s = list(100.0 + np.arange(len(rec.command_t_s)) * 0.05)
    return rec


def test_an_object_on_its_reference_succeeds_and_is_held(lift):
    rec = record_following(lift, 1000.0, lift.object_pose_at, lift.duration_s + 2.5)
    r = score_episode(rec, lift, CONFIG)
    assert r.success and r.held_after_end
    assert r.max_position_error_m < 1e-3
    assert r.policy_period_ms_p99 == pytest.approx(50.0, abs=0.1)
    assert r.commands == int(lift.duration_s / 0.05) + 1


def test_the_timeline_starts_at_the_first_command(lift):
    # The object follows the reference 1 s late relative to the first command: the lift is 10 cm in 2.5 s, so a
    # 1 s lag is several cm off along the way.
    rec = record_following(lift, 1000.0, lambda t: lift.object_pose_at(t - 1.0), lift.duration_s + 2.5)
    r = score_episode(rec, lift, CONFIG)
    assert not r.success and r.max_position_error_m > 0.04


def test_an_object_that_never_moves_fails_by_the_whole_lift_and_a_drop_is_not_held(lift):
    start = lift.object_pose_at(0.0)
    r = score_episode(record_following(lift, 5.0, lambda t: start, lift.duration_s + 2.5), lift, CONFIG)
    assert not r.success and r.max_position_error_m == pytest.approx(0.10, abs=2e-3)
    end = lift.object_pose_at(lift.duration_s)

    def dropped(t):  # tracked, then dropped back on the table 1 s after the end
        return lift.object_pose_at(t) if t < lift.duration_s + 1.0 else start
    r = score_episode(record_following(lift, 5.0, dropped, lift.duration_s + 2.5), lift, CONFIG)
    assert r.success and r.held_after_end is False
    assert r.hold_max_error_m == pytest.approx(float(np.linalg.norm(end[:3] - start[:3])), abs=1e-3)


def test_no_command_or_a_short_observation_is_reported(lift):
    r = score_episode(EpisodeRecord(reference="lift"), lift, CONFIG)
    assert not r.success and "no command" in r.notes[0]
    r = score_episode(record_following(lift, 0.0, lift.object_pose_at, lift.duration_s + 0.5), lift, CONFIG)
    assert r.held_after_end is None and any("hold" in n for n in r.notes)


def test_object_pose_coverage_counts_fresh_recent_poses_only():
    steps = np.arange(0.0, 2.0, 0.05)
    poses = list(np.arange(0.0, 2.0, 1 / 15))
    assert object_pose_coverage(steps, poses, [True] * len(poses), 0.15) == 1.0
    fresh = [not (0.5 <= t < 1.5) for t in poses]  # stale (predicted) poses for 1 s
    cov = object_pose_coverage(steps, poses, fresh, 0.15)
    assert 0.4 < cov < 0.6
    assert object_pose_coverage(steps, [], [], 0.15) == 0.0


def test_realtime_factor_and_summary():
    assert realtime_factor([0.0, 5.0], [10.0, 20.0]) == pytest.approx(0.5)
    assert np.isnan(realtime_factor([1.0], [1.0]))
    with pytest.raises(ValueError, match="hold_tolerance_m"):
        ScoringConfig(hold_tolerance_m=0.0)
    s = summarize([True, False], [], [])
    assert s["inprocess_success"] == 0.5 and s["deployed_success"] is None and s["n_references"] == 2


def test_object_start_forms_and_errors():
    assert object_start_pose("") is None and object_start_pose("cell") is None
    np.testing.assert_allclose(object_start_pose("reference:heldout_lift_high", D)[:3], [0.47, 0.04, 0.025])
    pose = object_start_pose("0.5, 0.1 0.025 1.5707963")
    np.testing.assert_allclose(pose, [0.5, 0.1, 0.025, 0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    with pytest.raises(ValueError, match="3 or 4"):
        object_start_pose("0.5 0.1")
    with pytest.raises(ValueError, match="neither"):
        object_start_pose("middle")
    with pytest.raises(ValueError, match="not found"):
        object_start_pose("reference:no_such_reference", D)


def test_sim_cell_places_the_object_and_keeps_it_across_resets():
    cell = SimCell(with_camera=False)
    cell.place_object([0.45, -0.05, 0.025, 0, 0, 0, 1])
    cell.step(300)
    np.testing.assert_allclose(cell.object_pose()[:3, 3], [0.45, -0.05, 0.025], atol=2e-3)
    cell.reset()
    np.testing.assert_allclose(cell.object_pose()[:3, 3], [0.45, -0.05, 0.025], atol=1e-6)
    with pytest.raises(ValueError, match="7 finite"):
        cell.place_object([0.45, 0.0, 0.025])


def test_the_gates_interventions_become_one_note_most_frequent_first():
    values = {"estopped": "False", "count[collision: step clipped before contact]": "3",
              "count[hand: robot far from setpoint, setpoint pulled back to max_tracking_error_rad]": "12",
              "interventions_total": "15"}
    assert intervention_note(values) == ("gate interventions: hand: robot far from setpoint, setpoint pulled back to "
                                         "max_tracking_error_rad x12; collision: step clipped before contact x3")
    assert intervention_note({"estopped": "False", "interventions_total": "0"}) is None
