"""Object pose through occlusion: the pose keeper's predictions, and the cube kept through the lift reference's
grasp (the Allegro hand closing on it and lifting it, rendered by the sim cell's camera)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from dexstack.perception.geometry import pose_error
from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator
from dexstack.perception.objects import load_object_model
from dexstack.perception.pose_keeper import STALE_POSITION_STD_M, PoseKeeper, PoseKeeperConfig
from dexstack.policies import load_reference, reference_path
from dexstack.robot.kinematics import Kinematics
from dexstack.sim import SimCell
from dexstack.sim.camera import SimCamera
from dexstack.sim.scene import OBJECT_JOINT
from dexstack.transforms import make_transform


def test_an_object_near_the_palm_moves_with_it_and_gets_less_certain():
    keeper = PoseKeeper(PoseKeeperConfig(max_attached_s=3.0))
    palm = make_transform((0.5, 0.0, 0.12), np.eye(3))
    obj = make_transform((0.5, 0.02, 0.05), np.eye(3))
    assert keeper.predict(0.0, palm) is None
    keeper.measured(0.0, obj, np.eye(6) * 1e-6, palm)
    moved = make_transform((0.45, 0.0, 0.22), np.eye(3))
    p1, p2 = keeper.predict(0.5, moved), keeper.predict(2.0, moved)
    assert p1.mode == "attached"
    np.testing.assert_allclose(p1.T_base_object[:3, 3], [0.45, 0.02, 0.15], atol=1e-12)
    assert p1.covariance_base[0, 0] >= STALE_POSITION_STD_M ** 2
    assert 1.0 > p1.confidence > p2.confidence > 0.0
    assert keeper.predict(3.5, moved) is None  # beyond max_attached_s: lost


def test_a_free_object_coasts_at_its_velocity_then_stops():
    keeper = PoseKeeper(PoseKeeperConfig(velocity_smoothing=1.0, velocity_decay_s=0.3, max_prediction_s=1.0))
    far_palm = make_transform((0.0, 0.5, 0.5), np.eye(3))
    keeper.measured(0.0, make_transform((0.5, 0.0, 0.025), np.eye(3)), None, far_palm)
    keeper.measured(0.1, make_transform((0.51, 0.0, 0.025), np.eye(3)), None, far_palm)  # 0.1 m/s along x
    p = keeper.predict(0.4, far_palm)
    assert p.mode == "velocity"
    assert p.T_base_object[0, 3] == pytest.approx(0.51 + 0.1 * 0.3 * (1 - np.exp(-1.0)))
    assert keeper.predict(10.0, None) is None
    keeper.measured(0.2, make_transform((0.9, 0.0, 0.025), np.eye(3)), None)  # a 3.9 m/s jump is not a velocity
    assert keeper.predict(0.3).T_base_object[0, 3] == pytest.approx(0.9 + 0.1 * 0.3 * (1 - np.exp(-1 / 3)))


@pytest.fixture(scope="module")
def grasp_frames():
    """Frames of the lift reference from just before the hand closes to the held cube lifted: (t, image, T_true,
    T_base_palm)."""
    cell = SimCell()
    camera = SimCamera(cell)
    d = cell.description
    kin = Kinematics(d)
    ref = load_reference(reference_path("lift"), d)
    q_adr = np.array([cell.model.joint(n).qposadr[0] for n in d.joints])
    o_adr = cell.model.joint(OBJECT_JOINT).qposadr[0]
    frames = []
    for t in (2.5, 3.5, 3.9, 4.1, 4.3, 4.8, 5.5, 6.5):
        q, p = ref.q_at(t), ref.object_pose_at(t)
        cell.data.qpos[q_adr] = q
        cell.data.qpos[o_adr:o_adr + 7] = [*p[:3], p[6], *p[3:6]]
        mujoco.mj_forward(cell.model, cell.data)
        frames.append((t, camera.render(), cell.object_pose(), kin.frame_pose(q, d.profile.hand.palm_link)))
    camera.close()
    return cell, frames


def test_the_grasped_cube_is_kept_through_the_hand_not_found_on_it(grasp_frames):
    cell, frames = grasp_frames
    cal = cell.calibration
    pinhole = cal.intrinsics  # the one camera model
    model = load_object_model("cube")
    estimator = ObjectPoseEstimator(model, cal.T_parent_camera, ObjectPoseConfig())
    keeper = PoseKeeper()
    kept = []
    for t, image, T_true, T_palm in frames:
        prediction = keeper.predict(t, T_palm)
        result = estimator.estimate(image.color_rgb8, image.depth_mm, pinhole, t,
                                    None if prediction is None else prediction.T_base_object)
        if result.tracking:
            keeper.measured(t, result.T_base_object, result.covariance_base, T_palm)
            T, stale = result.T_base_object, False
        else:
            assert prediction is not None, f"t={t}: lost without a prediction: {result.reason}"
            T, stale = prediction.T_base_object, True
        kept.append((t, stale, pose_error(T, T_true, model.symmetries())[0]))
    assert not any(stale for t, stale, _ in kept if t <= 4.1)  # seen before the hand closes
    assert any(stale for _, stale, _ in kept)  # ... and under it, kept by prediction
    assert max(mm for _, _, mm in kept) < 10.0, kept
    # Without the prediction, the lifted cube in the hand is lost or the hand is taken for it.
    t, image, T_true, _ = frames[-1]
    alone = ObjectPoseEstimator(model, cal.T_parent_camera, ObjectPoseConfig()).estimate(
        image.color_rgb8, image.depth_mm, pinhole, t)
    assert not alone.tracking or pose_error(alone.T_base_object, T_true, model.symmetries())[0] > 20.0
