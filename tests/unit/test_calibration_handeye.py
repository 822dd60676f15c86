"""Hand-eye solver on synthetic samples with known truth: numbers, outliers, degenerate input."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dexstack.calibration.handeye import HandEyeError, Sample, SolveConfig, pose_difference, solve
from dexstack.calibration.target import CalibrationTarget
from dexstack.camera_model import CameraModel
from dexstack.transforms import look_at, make_transform

CAMERA = CameraModel(640, 480, 615.0, 615.0, 319.5, 239.5)
TARGET = CalibrationTarget()
BOARD = TARGET.corner_points()
T_BASE_CAMERA = look_at((1.3, 0.02, 0.8), (0.4, 0.0, 0.3))


def _rot(axis_angles):
    return Rotation.from_rotvec(axis_angles).as_matrix()


def make_samples(mode, n, seed=0, noise_px=0.2, one_axis=False):
    """Random link poses whose board view is inside the image; PnP with the exact intrinsics, like detection."""
    rng = np.random.default_rng(seed)
    if mode == "eye_to_hand":
        X = T_BASE_CAMERA
        Y = make_transform((0.07, 0.1, 0.02), _rot([1.5, 0.1, -1.4]))  # T_link_board
    else:
        X = make_transform((0.05, 0.0, 0.04), _rot([0.0, 0.0, 0.3]))  # T_link_camera
        Y = make_transform((0.45, -0.1, 0.0), _rot([np.pi, 0.0, 0.0]))  # T_base_board, face up at table height
    samples = []
    while len(samples) < n:
        w = rng.normal(size=3) * 0.35
        if one_axis:
            w = np.array([0.0, 0.0, rng.uniform(-0.6, 0.6)])
        if mode == "eye_to_hand":
            # link pose such that the board faces the camera, then a random tilt
            T_cb = make_transform((rng.uniform(-0.15, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(0.8, 1.1)),
                                  _rot([np.pi, 0, 0]) @ _rot(w))
            T_bl = X @ T_cb @ np.linalg.inv(Y)
        else:
            T_cb = make_transform((rng.uniform(-0.12, 0.0), rng.uniform(-0.12, 0.0), rng.uniform(0.35, 0.5)),
                                  _rot(w))
            T_bl = Y @ np.linalg.inv(T_cb) @ np.linalg.inv(X)
        p = BOARD @ T_cb[:3, :3].T + T_cb[:3, 3]
        uv = CAMERA.project(p)
        if p[:, 2].min() < 0.1 or uv.min() < 5 or uv[:, 0].max() > 635 or uv[:, 1].max() > 475:
            continue
        uv = uv + rng.normal(scale=noise_px, size=uv.shape)
        ok, rvec, tvec = cv2.solvePnP(BOARD, uv, CAMERA.K, None)
        T_pnp = make_transform(tvec.reshape(3), cv2.Rodrigues(rvec)[0])
        samples.append(Sample(T_bl, uv, BOARD.copy(), T_pnp))
    return samples, X, Y


@pytest.mark.parametrize("mode", ["eye_to_hand", "eye_in_hand"])
def test_recovers_the_camera_pose_to_a_millimetre_from_15_noisy_samples(mode):
    samples, X, Y = make_samples(mode, 15)
    result = solve(mode, samples, CAMERA, SolveConfig(bootstrap=8))
    trans_mm, rot_deg = pose_difference(result.T_parent_camera, X)
    assert trans_mm < 1.0 and rot_deg < 0.1, (trans_mm, rot_deg, result.method)
    assert pose_difference(result.T_other_board, Y)[0] < 2.0
    assert 0.15 < result.reproj_px_rms < 0.4  # the 0.2 px per-axis noise, i.e. ~0.28 px in 2-D
    assert set(result.closed_forms) == {"tsai", "park", "horaud", "andreff", "daniilidis", "shah", "li"}
    assert result.outliers == []
    assert 0.0 < result.bootstrap_trans_mm_std < 2.0


def test_a_sample_with_a_wrong_robot_pose_is_flagged_and_left_out():
    samples, X, _ = make_samples("eye_to_hand", 12, seed=1)
    bad = samples[4]
    samples[4] = Sample(bad.T_base_link @ make_transform((0.03, 0.0, 0.0)), bad.image_points_px,
                        bad.object_points_m, bad.T_camera_board)
    result = solve("eye_to_hand", samples, CAMERA, SolveConfig(bootstrap=0))
    assert result.outliers == [4]
    assert result.per_sample_rms_px[4] > 5.0
    assert pose_difference(result.T_parent_camera, X)[0] < 1.5


def test_intrinsics_are_refined_toward_the_true_ones():
    samples, _, _ = make_samples("eye_to_hand", 15, seed=2)
    wrong = CameraModel(640, 480, 600.0, 600.0, 325.0, 236.0)
    result = solve("eye_to_hand", samples, wrong, SolveConfig(bootstrap=0, refine_intrinsics=True))
    r = result.refined_camera
    assert abs(r.fx - CAMERA.fx) < 3.0 and abs(r.cx - CAMERA.cx) < 3.0, r


def test_too_few_samples_and_one_axis_motions_are_refused_with_the_cause():
    samples, _, _ = make_samples("eye_to_hand", 4)
    with pytest.raises(HandEyeError, match="too few samples: 4"):
        solve("eye_to_hand", samples, CAMERA)
    samples, _, _ = make_samples("eye_to_hand", 10, one_axis=True)
    with pytest.raises(HandEyeError, match="degenerate motion"):
        solve("eye_to_hand", samples, CAMERA)
