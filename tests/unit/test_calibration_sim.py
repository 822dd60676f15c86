"""Eye-in-hand calibration in the MuJoCo cell (no ROS): a wrist camera mounted off its nominal pose, a ChArUco board
on the table, generated poses, rendered views, OpenCV detection, the solver. The pose is recovered, not the file's."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from dexstack.calibration.handeye import Sample, SolveConfig, pose_difference, solve  # noqa: E402
from dexstack.calibration.poses import PoseConfig, Setup, generate_poses, view_check  # noqa: E402
from dexstack.calibration.target import TargetDetector  # noqa: E402
from dexstack.robot.kinematics import Kinematics  # noqa: E402
from dexstack.sim.camera import SimCamera  # noqa: E402
from dexstack.sim.cell import SimCell  # noqa: E402


def test_eye_in_hand_recovers_the_true_wrist_camera_from_rendered_views():
    cell = SimCell("tabletop_wrist_camera")
    cal, target = cell.calibration, cell.target
    truth = cell.camera.T_parent_camera
    assert pose_difference(cal.T_parent_camera, truth)[0] > 10.0  # the nominal file is off
    kin = Kinematics(cell.description)
    setup = Setup("eye_in_hand", cal.T_parent_camera, target.mount.T_link_board, cal.parent_frame, cal.intrinsics,
                  target)
    config = PoseConfig(n_poses=10)
    poses = generate_poses(kin, setup, cell.description.home(), config)
    lo, hi = np.array(config.workspace_min_m), np.array(config.workspace_max_m)
    camera = SimCamera(cell)
    detector = TargetDetector(target)
    samples = []
    for q in poses:
        T_link = kin.frame_pose(q, cal.parent_frame)
        assert view_check(setup, T_link, config) == ""
        palm = kin.frame_pose(q, cell.description.profile.hand.palm_link)[:3, 3]
        assert np.all(palm > lo) and np.all(palm < hi)  # calibration motions stay in the workspace box
        cell.reset(q)
        image = camera.render()
        det = detector.detect(image.color_rgb8, cell.camera.intrinsics,
                              np.where(image.depth_mm > 0, image.depth_mm * 1e-3, np.nan))
        if det.ok:
            samples.append(Sample(T_link, det.image_points_px, det.object_points_m, det.T_camera_board))
    camera.close()
    assert len(samples) >= 8
    result = solve("eye_in_hand", samples, cell.camera.intrinsics, SolveConfig(bootstrap=0))
    trans_mm, rot_deg = pose_difference(result.T_parent_camera, truth)
    assert trans_mm < 1.0 and rot_deg < 0.1, (trans_mm, rot_deg)
    assert pose_difference(result.T_other_board, target.mount.T_link_board)[0] < 3.0  # the board where it lies
