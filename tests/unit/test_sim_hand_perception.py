"""MediaPipe on the rendered human hand (operator camera of the tabletop_teleop cell), and the perception faults of
visual teleoperation on real rendered frames: depth holes at the fingertips, a hand too close for valid depth, a
second hand in view."""

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dexstack.perception.hand import FINGERTIPS, HandPipeline, HandPipelineConfig  # noqa: E402
from dexstack.sim import SimCell, load_cell_config  # noqa: E402
from dexstack.sim.human_hand import POSES  # noqa: E402
from dexstack.transforms import make_transform, rpy_to_matrix  # noqa: E402

pytest.importorskip("mediapipe")

ROLLS_DEG = (0.0, -30.0, 30.0)
SHAPES = ("open", "relaxed", "pinch", "point")


@pytest.fixture(scope="module")
def scene():
    from dexstack.perception.hand_detectors import MediaPipeHandDetector
    from dexstack.sim.camera import SimCamera

    cell = SimCell("tabletop_teleop", with_camera=False)
    camera = SimCamera(cell, camera=cell.operator_camera)
    detector = MediaPipeHandDetector(static_image_mode=True, max_num_hands=2)
    yield cell, camera, detector
    detector.close()
    camera.close()


def _rest(cell, roll_deg=0.0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    hh = cell.cell.human_hand
    T = make_transform(hh.rest_xyz_m, rpy_to_matrix(hh.rest_rpy_rad))
    T[:3, :3] = T[:3, :3] @ rpy_to_matrix((np.radians(roll_deg), 0.0, 0.0))
    T[:3, 3] += offset
    return T


def _render(scene, T, q):
    cell, camera, _ = scene
    cell.set_human_hand(T, q)
    image = camera.render()
    return image.color_rgb8, image.depth_mm, camera.keypoints()


def _pipeline(scene, **config):
    cell, _, detector = scene
    cal = cell.operator_calibration
    return (HandPipeline(detector, cal.T_parent_camera, HandPipelineConfig(**config), cal.depth_scale_m),
            cal.intrinsics)


def test_mediapipe_finds_the_rendered_hand_and_depth_places_it(scene):
    pipeline, cam = _pipeline(scene)
    found, errors = 0, []
    for k, (shape, roll) in enumerate((s, r) for s in SHAPES for r in ROLLS_DEG):
        color, depth, gt = _render(scene, _rest(scene[0], roll), POSES[shape])
        pipeline.reset()
        result = pipeline.process(color, depth, cam, float(k))
        if result.primary is not None:
            found += 1
            errors.append(np.linalg.norm(result.primary.p_base_raw_m - gt, axis=1))
    assert found >= 8, f"detected in {found} of {len(SHAPES) * len(ROLLS_DEG)} single frames"
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.020, np.median(errors)  # skin surface vs joint centres: ~1 cm by construction


def test_depth_holes_at_the_fingertips_do_not_move_the_hand(scene):
    cell = scene[0]
    color, depth, gt = _render(scene, _rest(cell), POSES["open"])
    pipeline, cam = _pipeline(scene)
    full = pipeline.process(color, depth, cam, 0.0).primary
    assert full is not None
    holed = depth.copy()
    T_cam_base = np.linalg.inv(cell.operator_calibration.T_parent_camera)
    for tip in FINGERTIPS:  # no return in a 25x25 px square (~3 cm) on every fingertip the detector found
        p = T_cam_base[:3, :3] @ full.p_base_raw_m[tip] + T_cam_base[:3, 3]
        u, v = (int(round(x)) for x in cam.project(p[None])[0])
        holed[max(0, v - 12): v + 13, max(0, u - 12): u + 13] = 0
    pipeline.reset()
    with_holes = pipeline.process(color, holed, cam, 0.0).primary
    assert with_holes is not None
    tips = list(FINGERTIPS)
    assert all(with_holes.depth_source[i].value == "model" for i in tips)  # filled from the hand's shape
    jump = np.linalg.norm(with_holes.p_base_raw_m - full.p_base_raw_m, axis=1)
    assert jump.max() < 0.035, jump  # no jump: a keypoint in a hole hangs off its parent along the bone
    assert np.median(jump) < 0.003, jump  # the rest of the hand stays where it was
    assert np.median(np.linalg.norm(with_holes.p_base_raw_m[tips] - gt[tips], axis=1)) < 0.03


def test_a_hand_too_close_for_depth_is_rejected_with_a_reason(scene):
    cell = scene[0]
    cal = cell.operator_calibration
    toward_camera = cal.T_parent_camera[:3, 3] - np.array(cell.cell.human_hand.rest_xyz_m)
    T = _rest(cell, offset=0.35 * toward_camera / np.linalg.norm(toward_camera))  # ~0.45 m from the camera
    color, depth, _ = _render(scene, T, POSES["open"])
    min_range_mm = 520  # a depth camera's minimum range (a D415's is ~0.45 m): nearer returns no depth
    depth = np.where(depth < min_range_mm, 0, depth).astype(np.uint16)
    pipeline, cam = _pipeline(scene)
    result = pipeline.process(color, depth, cam, 0.0)
    assert result.detected >= 1  # MediaPipe sees it ...
    assert result.primary is None  # ... but nothing is published: it cannot be placed in 3-D
    assert any(reason.startswith("no depth") for _, reason in result.rejected), result.rejected
    color, depth, gt = _render(scene, _rest(cell), POSES["open"])  # it moves back: tracked again, in place
    back = pipeline.process(color, depth, cam, 1.0).primary
    assert back is not None
    assert np.median(np.linalg.norm(back.p_base_m - gt, axis=1)) < 0.02


def test_a_second_hand_in_view_does_not_take_over(scene):
    """The operator's right hand plus a bystander's left hand (rendered separately, composited by depth)."""
    cell = scene[0]
    color_r, depth_r, gt_r = _render(scene, _rest(cell), POSES["open"])
    left_cfg = dataclasses.replace(load_cell_config("tabletop_teleop"), human_hand=dataclasses.replace(
        cell.cell.human_hand, side="left"))
    from dexstack.sim.camera import SimCamera

    left_cell = SimCell(left_cfg, with_camera=False)
    left_camera = SimCamera(left_cell, camera=left_cell.operator_camera)
    T_left = _rest(cell, offset=(0.0, 0.22, 0.0))
    T_left[:3, :3] = T_left[:3, :3] @ rpy_to_matrix((0.0, 0.0, np.pi))  # reaching in from the other side
    T_left[:3, 3] += (0.25, 0.0, 0.0)
    left_cell.set_human_hand(T_left, POSES["relaxed"])
    left = left_camera.render()
    left_camera.close()
    nearer = (left.depth_mm > 0) & ((left.depth_mm < depth_r) | (depth_r == 0))
    color = np.where(nearer[..., None], left.color_rgb8, color_r)
    depth = np.where(nearer, left.depth_mm, depth_r).astype(np.uint16)
    pipeline, cam = _pipeline(scene, primary_hand="any")
    alone = pipeline.process(color_r, depth_r, cam, 0.0).primary  # the operator's hand is tracked ...
    assert alone is not None
    result = pipeline.process(color, depth, cam, 1 / 30)  # ... then a second hand comes into view
    assert result.detected == 2, result
    assert result.primary is not None
    jump = np.linalg.norm(result.primary.p_base_m - alone.p_base_m, axis=1)
    assert jump.max() < 0.03, jump  # still the operator's hand: no jump
    assert any(reason.startswith(("second hand", "duplicate")) for _, reason in result.rejected), result.rejected
    after = pipeline.process(color_r, depth_r, cam, 2 / 30).primary  # the bystander leaves: still the operator
    assert after is not None and np.linalg.norm(after.p_base_m - alone.p_base_m, axis=1).max() < 0.03


def test_a_smaller_inference_image_finds_the_hand_in_full_image_pixels(scene):
    """hand_pose's inference_scale: MediaPipe sees 320x240, the keypoints come back in 640x480 pixels."""
    from dexstack.perception.hand_detectors import MediaPipeHandDetector

    color, _, gt = _render(scene, _rest(scene[0]), POSES["open"])
    cam = scene[0].operator_calibration.intrinsics
    T_cam_base = np.linalg.inv(scene[0].operator_calibration.T_parent_camera)
    uv_true = cam.project(gt @ T_cam_base[:3, :3].T + T_cam_base[:3, 3])
    half = MediaPipeHandDetector(static_image_mode=True, inference_scale=0.5)
    try:
        hands = half.detect(color)
    finally:
        half.close()
    assert len(hands) == 1
    assert np.median(np.linalg.norm(hands[0].uv_px - uv_true, axis=1)) < 8.0  # px of the full image
    with pytest.raises(ValueError, match="inference_scale"):
        MediaPipeHandDetector(inference_scale=0.0)
