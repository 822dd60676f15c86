"""One RGB-D frame of a human grasp -> grasp target (dexstack-grasp-target): the rendered frame through the
object_pose core and retargeting, and every refusal with its cause."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dexstack.cli import grasp_target  # noqa: E402
from dexstack.grasp.from_frame import GraspFromFrame, GraspInputError, mask_depth_outside  # noqa: E402
from dexstack.grasp.human_grasps import human_grasp  # noqa: E402
from dexstack.perception.objects import load_object_model  # noqa: E402
from dexstack.sim.camera import SimCamera  # noqa: E402
from dexstack.sim.cell import SimCell  # noqa: E402
from dexstack.sim.config import load_cell_config, with_object  # noqa: E402


class NoHands:
    """A detector that sees nothing (the frames here are about the object and the retargeting)."""

    def detect(self, color_rgb8):
        return []

    def close(self):
        pass


@pytest.fixture(scope="module")
def scene():
    sim = SimCell(with_object(load_cell_config("tabletop_grasp"), "can"))
    camera = SimCamera(sim)
    empty = camera.render()  # the can alone on the table, the human hand out of view
    grasp = human_grasp("can", "side_power")
    sim.set_human_hand(sim.object_pose() @ grasp.T_object_H, grasp.q_rad)
    frame = camera.render()
    keypoints = camera.keypoints()
    yield sim, empty, frame, keypoints
    camera.close()


def _pipeline(sim, **kw):
    cal = sim.calibration
    return GraspFromFrame(load_object_model("can"), cal.T_parent_camera, cal.intrinsics, cal.depth_scale_m,
                          detector=NoHands(), **kw)


def test_a_rendered_frame_gives_the_grasp_target(scene):
    sim, empty, frame, keypoints = scene
    result = _pipeline(sim).estimate(frame.color_rgb8, frame.depth_mm, empty.color_rgb8, empty.depth_mm,
                                     keypoints_base_m=keypoints)
    assert np.linalg.norm(result.T_base_object[:3, 3] - sim.object_pose()[:3, 3]) < 0.005
    # the plain retargeting's first candidate: 2 of the 5 human contact fingers matched (--verify picks among them)
    assert result.target.contact_match >= 0.4 and result.target.max_penetration_m <= 0.004
    assert "thumb" in result.target.human_contact_fingers


def test_verify_keeps_a_candidate_that_lifts_with_the_same_contact_band(scene):
    """--verify: the target is the verifier's choice for the grasp (the keypoints' contact band kept)."""
    sim, empty, frame, keypoints = scene
    pipeline = _pipeline(sim, verify=True)
    result = pipeline.estimate(frame.color_rgb8, frame.depth_mm, empty.color_rgb8, empty.depth_mm,
                               keypoints_base_m=keypoints)
    (verifier,) = pipeline._verifiers.values()  # built for the exact keypoints' band only
    assert verifier.retargeters[0].config.contact_gap_m == pipeline.retargeter.config.contact_gap_m
    (checked,) = verifier._memo.values()  # the one verified human grasp of this frame
    assert checked.verified and checked.target is result.target


def test_exact_keypoints_get_the_target_the_bench_and_training_use(scene):
    """A library grasp (grasp_target's sim_human_grasp) is retargeted with the retargeter's own contact band, as
    bench/grasp.py and the policy's training bank retarget it; the wide band is for detected keypoints only (with
    it the same grasp constrained twice the keypoints and gave another target)."""
    from dexstack.retarget.functional import FunctionalRetargeter

    sim, empty, frame, _ = scene
    grasp = human_grasp("can", "side_power")
    pipeline = _pipeline(sim, contact_gap_m=0.02)
    assert pipeline.detected_retargeter.config.contact_gap_m == 0.02
    held = pipeline.estimate(frame.color_rgb8, frame.depth_mm, empty.color_rgb8, empty.depth_mm,
                             keypoints_object_m=grasp.keypoints_object_m)
    # bench/grasp.py's table plane: the object stands on it (the fit's height is set to the resting one)
    assert held.T_base_object[2, 3] == pytest.approx(load_object_model("can").rest_height_m, abs=1e-12)
    bench = FunctionalRetargeter().retarget(load_object_model("can"), grasp.keypoints_object_m,
                                            table_z_m=-load_object_model("can").rest_height_m)
    np.testing.assert_allclose(held.target.q_hand_rad, bench.q_hand_rad, atol=1e-9)
    np.testing.assert_allclose(held.target.T_object_palm, bench.T_object_palm, atol=1e-9)
    assert held.target.contact_mask.sum() == bench.contact_mask.sum()


def test_the_object_fit_ignores_the_robot_base(scene):
    """Without the table-workspace mask, object_pose's coarse search fits the can to the robot's base."""
    sim, empty, _, _ = scene
    cal = sim.calibration
    masked = mask_depth_outside(empty.depth_mm, cal.intrinsics, cal.T_parent_camera, cal.depth_scale_m,
                                ((0.25, -0.5, -0.01), (0.9, 0.5, 0.5)))
    assert 0 < np.count_nonzero(masked) < 0.5 * np.count_nonzero(empty.depth_mm)
    from dexstack.perception.object_pose import ObjectPoseEstimator

    est = ObjectPoseEstimator(load_object_model("can"), cal.T_parent_camera, depth_scale_m=cal.depth_scale_m)
    fit = est.estimate(empty.color_rgb8, masked, cal.intrinsics, 0.0)
    assert fit.tracking and np.linalg.norm(fit.T_base_object[:3, 3] - sim.object_pose()[:3, 3]) < 0.005


def test_refusals_name_the_cause(scene):
    sim, empty, frame, keypoints = scene
    pipeline = _pipeline(sim)
    with pytest.raises(GraspInputError, match="no hand in the frame"):
        pipeline.estimate(frame.color_rgb8, frame.depth_mm)
    with pytest.raises(GraspInputError, match="not touching 'can'"):
        pipeline.estimate(frame.color_rgb8, frame.depth_mm, empty.color_rgb8, empty.depth_mm,
                          keypoints_base_m=keypoints + np.array([0.0, -0.25, 0.1]))
    no_object = np.zeros_like(empty.depth_mm)
    with pytest.raises(GraspInputError, match="no 'can' in the frame"):
        pipeline.estimate(frame.color_rgb8, frame.depth_mm, empty.color_rgb8, no_object, keypoints_base_m=keypoints)


def test_cli_refuses_unknown_objects_and_missing_frames(capsys):
    assert grasp_target.main(["--object", "mug", "--sim"]) == 2
    err = capsys.readouterr().err
    assert "unknown object configuration 'mug'" in err and "'can'" in err and "'bottle'" in err
    assert grasp_target.main(["--object", "can"]) == 2
    assert "give --color and --depth" in capsys.readouterr().err
    assert grasp_target.main(["--object", "can", "--color", "/nonexistent.png", "--depth", "/nonexistent.png"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_a_library_grasp_held_where_the_sim_has_the_object_lands_on_the_hand(scene):
    """grasp_target's sim_human_grasp: the library grasp (object frame) and where it is as the human holds the
    object (base frame). The can's fitted yaw is arbitrary; its frame is turned to the hand's, so the target's
    keypoints are the seen hand's, the fitted position kept (this frame's fit put the library grasp 15 cm from
    the hand)."""
    from dexstack.transforms import transform_points

    sim, empty, frame, _ = scene
    grasp = human_grasp("can", "side_power")
    seen = transform_points(sim.object_pose(), grasp.keypoints_object_m)
    pipeline = _pipeline(sim)
    args = (frame.color_rgb8, frame.depth_mm, empty.color_rgb8, empty.depth_mm)
    as_fitted = pipeline.estimate(*args, keypoints_object_m=grasp.keypoints_object_m)
    held = pipeline.estimate(*args, keypoints_object_m=grasp.keypoints_object_m, keypoints_base_m=seen)

    def miss_m(result):
        return float(np.max(np.linalg.norm(result.keypoints_base_m - seen, axis=1)))

    assert miss_m(held) < 0.005
    assert np.allclose(held.T_base_object[:3, 3], as_fitted.T_base_object[:3, 3], atol=1e-3)  # (the turn is about
    # the sampled surface's centroid)
    if miss_m(as_fitted) < 0.005:  # the fit happened to be in the hand's frame: nothing to turn
        assert np.allclose(held.T_base_object, as_fitted.T_base_object)


def test_a_fit_standing_on_the_table_rests_on_it_and_any_other_is_kept():
    from dexstack.grasp.from_frame import standing_on_table
    from dexstack.transforms import rpy_to_matrix

    model = load_object_model("juice_box")
    T = np.eye(4)
    T[:3, :3] = rpy_to_matrix([0.0, 0.0, 0.7])
    T[:3, 3] = (0.5, 0.0, 0.02 + model.rest_height_m - 0.0002)  # the fit 0.2 mm low on a table at z = 2 cm
    rested = standing_on_table(model, T, table_z_base_m=0.02)
    assert rested[2, 3] == pytest.approx(0.02 + model.rest_height_m, abs=1e-12)
    np.testing.assert_array_equal(rested[:2], T[:2])  # x, y and the rotation as fitted
    tilted = T.copy()
    tilted[:3, :3] = rpy_to_matrix([0.3, 0.0, 0.7])  # 17 deg: lying against something
    lifted = T.copy()
    lifted[2, 3] += 0.03  # 3 cm up: held, or on something else
    for pose in (tilted, lifted):
        np.testing.assert_array_equal(standing_on_table(model, pose, table_z_base_m=0.02), pose)
