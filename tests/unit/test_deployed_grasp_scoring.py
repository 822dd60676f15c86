"""The launched graph's grasp score (dexstack.evaluation.deployed_grasp.score_grasp) on synthetic episodes whose rise
and slip are known: the in-process benchmark's rule (rise >= 8 cm at the end, < 2 cm in the palm over the hold)."""

from __future__ import annotations

import numpy as np
import pytest

from dexstack.evaluation.deployed_grasp import GraspScoring, score_grasp
from dexstack.grasp.episode import GraspPhases

PH = GraspPhases()
START_S = 3.0  # the policy's first command on the node's clock


def palm_pose(q: np.ndarray) -> np.ndarray:
    """A palm at height q[0] (m) above the origin, turned by q[1] (rad) about z."""
    T = np.eye(4)
    c, s = np.cos(q[1]), np.sin(q[1])
    T[:2, :2] = [[c, -s], [s, c]]
    T[2, 3] = q[0]
    return T


def episode(lift_m: float, carried: float, slip_in_hold_m: float = 0.0, turn_rad: float = 0.0, dt: float = 0.01):
    """Object at z 0.05 until the lift; the palm rises ``lift_m`` over the lift phase, the object ``carried`` of it;
    during the hold the object slides ``slip_in_hold_m`` along x (in the turned palm frame too)."""
    t = np.arange(0.0, START_S + PH.duration_s + 1.0, dt)
    e = t - START_S
    up = np.clip((e - PH.t_lift_s) / PH.lift_s, 0.0, 1.0) * lift_m
    slide = np.clip((e - PH.t_hold_s) / PH.hold_s, 0.0, 1.0) * slip_in_hold_m
    q = np.stack([0.3 + up, np.full_like(t, turn_rad)], axis=1)
    pose = np.zeros((len(t), 7))
    pose[:, 0] = slide
    pose[:, 2] = 0.05 + carried * up
    pose[:, 6] = 1.0
    return t, pose, t, q


@pytest.mark.parametrize("lift_m, carried, slip_m, turn, success, reason", [
    (0.10, 1.0, 0.0, 0.0, True, ""),
    (0.10, 1.0, 0.0, 0.7, True, ""),  # the palm's turn does not read as slip
    (0.10, 0.0, 0.0, 0.0, False, "rose 0 mm"),  # left on the table
    (0.10, 0.7, 0.0, 0.0, False, "rose 70 mm"),  # carried only 7 cm
    (0.10, 1.0, 0.03, 0.0, False, "slipped 30 mm in the hand"),
    (0.10, 1.0, 0.015, 0.3, True, ""),
])
def test_rise_and_slip_are_measured_like_the_in_process_benchmark(lift_m, carried, slip_m, turn, success, reason):
    gt_t, gt, jt, jq = episode(lift_m, carried, slip_m, turn)
    score = score_grasp(gt_t, gt, jt, jq, START_S, palm_pose, GraspScoring(phases=PH))
    assert score.success == success
    assert score.rise_m == pytest.approx(carried * lift_m, abs=1e-6)
    assert score.slip_m == pytest.approx(slip_m, abs=1e-6)
    assert reason in score.reason and (score.reason == "") == success


def test_an_episode_recorded_short_of_its_end_fails_with_the_reason():
    gt_t, gt, jt, jq = episode(0.10, 1.0)
    cut = gt_t < START_S + PH.duration_s - 1.0
    score = score_grasp(gt_t[cut], gt[cut], jt, jq, START_S, palm_pose, GraspScoring(phases=PH))
    assert not score.success and "not recorded over the episode" in score.reason
    score = score_grasp(gt_t, gt, jt[:10], jq[:10], START_S, palm_pose, GraspScoring(phases=PH))
    assert not score.success and score.reason == "no joint state over the hold"  # not the stale state's slip


def test_scoring_config_refuses_non_positive_thresholds():
    with pytest.raises(ValueError, match="must be positive"):
        GraspScoring(success_rise_m=0.0)


def test_target_difference_measures_the_palm_and_the_fingers_against_the_benchs_target():
    from dataclasses import replace

    from dexstack.evaluation.deployed_grasp import target_difference
    from dexstack.grasp.human_grasps import human_grasp
    from dexstack.perception.objects import load_object_model
    from dexstack.retarget.functional import FunctionalRetargeter
    from dexstack.transforms import rpy_to_matrix

    model = load_object_model("can")
    bench = FunctionalRetargeter().retarget(model, human_grasp("can", "side_power").keypoints_object_m,
                                            table_z_m=-model.rest_height_m)
    assert target_difference(bench, bench) == {"palm_mm": 0.0, "palm_deg": 0.0, "hand_rad": 0.0}
    moved = bench.T_object_palm.copy()
    moved[:3, :3] = moved[:3, :3] @ rpy_to_matrix([0.0, 0.0, np.deg2rad(5.0)])
    moved[:3, 3] += moved[:3, :3] @ np.array([0.003, 0.0, 0.004])  # 5 mm in the palm's own frame
    q = bench.q_hand_rad.copy()
    q[3] += 0.2
    other = replace(bench, T_object_palm=moved, q_hand_rad=q)
    assert target_difference(other, bench) == {"palm_mm": pytest.approx(5.0, abs=1e-3),
                                               "palm_deg": pytest.approx(5.0, abs=1e-3), "hand_rad": pytest.approx(0.2)}
