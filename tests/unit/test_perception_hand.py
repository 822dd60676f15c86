"""Hand pipeline core: depth lifting, frames, plausibility and filtering on synthetic hands whose answer is known;
the MediaPipe detector loads from the wheel and sees no hand in an empty image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dexstack.calibration import load_camera_calibration
from dexstack.perception.depth import DepthPatchConfig, DepthStatus, sample_depth
from dexstack.perception.geometry import invert_transform, transform_points
from dexstack.perception.hand import (
    BONES,
    FINGERTIPS,
    NOMINAL_BONE_LENGTH_M,
    DepthSource,
    HandObservation,
    HandPipeline,
    HandPipelineConfig,
    LiftConfig,
    LiftError,
    bone_lengths,
    check_bone_lengths,
    lift_hand,
    wrist_frame,
)
from dexstack.perception.hand_detectors import MediaPipeHandDetector, make_hand_detector, observations_from_mediapipe
from dexstack.perception.one_euro import OneEuroConfig, OneEuroFilter
from dexstack.transforms import make_transform, rpy_to_matrix

CAL = load_camera_calibration("sim_tabletop")
CAMERA = CAL.intrinsics
T_BASE_CAMERA = CAL.T_parent_camera
BACKGROUND_MM = 1500


def canonical_right_hand() -> np.ndarray:
    """(21, 3) keypoints of a right hand in its wrist frame (x to the middle MCP, z out of the palm, y to the
    pinky), bones of nominal length, fingers slightly curled toward the palm (+z)."""
    p = np.zeros((21, 3))
    mcp_y = {5: -0.022, 9: 0.0, 13: 0.018, 17: 0.034}
    for k, (a, b) in enumerate(BONES):
        length = NOMINAL_BONE_LENGTH_M[k]
        if a == 0 and b in mcp_y:
            y = mcp_y[b]
            p[b] = [np.sqrt(length ** 2 - y ** 2), y, 0.0]
        elif a == 0:  # thumb CMC
            p[b] = length * np.array([0.6, -0.8, 0.0])
        elif b <= 4:  # thumb: out to the side and forward
            d = np.array([0.6, -0.6, 0.25 * (b - 1)])
            p[b] = p[a] + length * d / np.linalg.norm(d)
        else:  # fingers: curl a little more at each joint
            curl = np.radians(12.0 * ((b - 1) % 4))
            p[b] = p[a] + length * np.array([np.cos(curl), 0.0, np.sin(curl)])
    return p


# The hand in front of the camera, above the table, palm roughly toward the camera.
T_BASE_HAND = make_transform([0.75, 0.05, 0.35], rpy_to_matrix([0.3, -0.9, 2.6]))


def hand_points_base(T_base_hand=T_BASE_HAND, mirror: bool = False) -> np.ndarray:
    p = canonical_right_hand()
    if mirror:
        p[:, 1] *= -1.0  # a left hand
    return transform_points(T_base_hand, p)


def render_hand(p_base: np.ndarray, finger_radius_px: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (21, 2), 16UC1 depth image) of a hand drawn as thick bones and a palm over a flat background."""
    p_cam = transform_points(invert_transform(T_BASE_CAMERA), p_base)
    uv = CAMERA.project(p_cam)
    h, w = CAMERA.height, CAMERA.width
    depth = np.full((h, w), np.inf)
    u0, v0 = np.maximum(np.floor(uv.min(axis=0) - 2 * finger_radius_px).astype(int), 0)
    u1, v1 = np.minimum(np.ceil(uv.max(axis=0) + 2 * finger_radius_px).astype(int), [w, h])
    vv, uu = np.mgrid[0:h, 0:w]
    pix = np.stack((uu, vv), axis=-1).astype(float)[v0:v1, u0:u1]
    roi = depth[v0:v1, u0:u1]  # a view: bones are drawn in the hand's bounding box only
    for a, b in BONES:
        d = uv[b] - uv[a]
        t = np.clip(((pix - uv[a]) @ d) / max(d @ d, 1e-9), 0.0, 1.0)
        dist = np.linalg.norm(pix - (uv[a] + t[..., None] * d), axis=-1)
        z = p_cam[a, 2] + t * (p_cam[b, 2] - p_cam[a, 2])
        near = dist <= finger_radius_px
        roi[near] = np.minimum(roi[near], z[near])
    # Palm: the plane through wrist, index MCP and pinky MCP, inside their triangle (plus the ring MCP).
    import cv2

    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(uv[[0, 5, 9, 13, 17]]).astype(np.int32), 1)
    n = np.cross(p_cam[5] - p_cam[0], p_cam[17] - p_cam[0])
    rays = np.stack(((uu - CAMERA.cx) / CAMERA.fx, (vv - CAMERA.cy) / CAMERA.fy, np.ones_like(uu, float)), -1)
    z_palm = (n @ p_cam[0]) / (rays @ n)
    palm = mask.astype(bool)
    depth[palm] = np.minimum(depth[palm], z_palm[palm])
    depth_mm = np.where(np.isfinite(depth), np.rint(depth * 1000.0), BACKGROUND_MM).astype(np.uint16)
    return uv, depth_mm


def observation(p_base: np.ndarray, handedness: str = "right", score: float = 0.9
                ) -> tuple[HandObservation, np.ndarray]:
    uv, depth = render_hand(p_base)
    z = transform_points(invert_transform(T_BASE_CAMERA), p_base)[:, 2]
    rel_px = (z - z[0]) * CAMERA.fx / np.median(z)  # a perfect model's relative depth, in pixel units
    return HandObservation(uv_px=uv, rel_depth_px=rel_px, handedness=handedness, score=score), depth


# ---------------------------------------------------------------------------------------------- depth patches
def test_depth_patch_median_holes_and_edges():
    depth = np.full((40, 40), 1000, np.uint16)
    depth[:, 20:] = 600  # a near surface on the right half
    depth[0:8, 0:8] = 0  # a hole
    cfg = DepthPatchConfig(radius_px=3)
    s = sample_depth(depth, np.array([[10.0, 20.0], [30.0, 20.0], [3.0, 3.0], [20.0, 30.0], [-50.0, 5.0]]), cfg)
    assert s.status[0] is DepthStatus.OK and s.z_m[0] == pytest.approx(1.0)
    assert s.status[1] is DepthStatus.OK and s.z_m[1] == pytest.approx(0.6)
    assert s.status[2] is DepthStatus.HOLE and np.isnan(s.z_m[2])
    assert s.status[3] is DepthStatus.EDGE and s.z_m[3] == pytest.approx(0.6)  # the nearer surface wins
    assert s.status[4] is DepthStatus.HOLE  # outside the image


# ---------------------------------------------------------------------------------------------- lifting
@pytest.mark.parametrize("patch_radius_px", [3, 7])
def test_lifting_recovers_keypoints_in_the_base_frame(patch_radius_px):
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    config = LiftConfig(patch=DepthPatchConfig(radius_px=patch_radius_px))
    lifted = lift_hand(obs, depth, CAMERA, T_BASE_CAMERA, config)
    err_mm = 1000 * np.linalg.norm(lifted.p_base_m - p_true, axis=1)
    assert err_mm.max() < 2.5, err_mm
    assert lifted.n_measured >= 18
    # The same points in the camera frame, moved by the calibration's extrinsics.
    np.testing.assert_allclose(transform_points(T_BASE_CAMERA, lifted.p_camera_m), lifted.p_base_m, atol=1e-12)
    if patch_radius_px > 5:  # wider than the fingers: fingertip patches straddle the background, still lift right
        assert {lifted.depth_status[k] for k in FINGERTIPS} == {DepthStatus.EDGE}


def test_holes_fall_back_to_model_depth_with_lower_confidence():
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    for k in FINGERTIPS[:3]:
        u, v = np.rint(obs.uv_px[k]).astype(int)
        depth[v - 8:v + 9, u - 8:u + 9] = 0  # no return around three fingertips
    lifted = lift_hand(obs, depth, CAMERA, T_BASE_CAMERA)
    for k in FINGERTIPS[:3]:
        assert lifted.depth_source[k] is DepthSource.MODEL
        assert lifted.confidence[k] == pytest.approx(0.5 * obs.score)
    assert lifted.confidence[0] == pytest.approx(obs.score)
    err_mm = 1000 * np.linalg.norm(lifted.p_base_m - p_true, axis=1)
    assert err_mm.max() < 4.0, err_mm


def test_depth_outliers_are_rejected_not_averaged_in():
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    u, v = np.rint(obs.uv_px[8]).astype(int)
    z_tip = transform_points(invert_transform(T_BASE_CAMERA), p_true)[8, 2]
    depth[v - 6:v + 7, u - 6:u + 7] = int(1000 * (z_tip - 0.12))  # an occluder 12 cm in front of the index tip
    lifted = lift_hand(obs, depth, CAMERA, T_BASE_CAMERA)
    assert lifted.depth_source[8] is DepthSource.MODEL
    assert 1000 * np.linalg.norm(lifted.p_base_m[8] - p_true[8]) < 4.0


def test_a_fingertip_reading_another_surface_within_tolerance_hangs_off_its_bone():
    """A fingertip curled under the hand (a fist) reads the surface in front of it, 2.5 cm nearer: inside the
    outlier tolerance (3 cm), so it would be kept and its bone would be ~2x too long. The bone repair re-places it
    along the bone with the model's depth; without it the hand fails the bone check."""
    offset_m = -0.025
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    u, v = np.rint(obs.uv_px[8]).astype(int)
    z_tip = transform_points(invert_transform(T_BASE_CAMERA), p_true)[8, 2]
    depth[v - 6:v + 7, u - 6:u + 7] = int(1000 * (z_tip + offset_m))
    repaired = lift_hand(obs, depth, CAMERA, T_BASE_CAMERA)
    assert repaired.depth_source[8] is DepthSource.MODEL and repaired.n_measured == 20
    assert 1000 * np.linalg.norm(repaired.p_base_m[8] - p_true[8]) < 4.0
    assert check_bone_lengths(repaired.p_base_m) is None
    kept = lift_hand(obs, depth, CAMERA, T_BASE_CAMERA, LiftConfig(bone_repair_tolerance=0.0))
    assert kept.depth_source[8] is DepthSource.MEASURED
    assert "implausible bone length" in check_bone_lengths(kept.p_base_m)


def test_a_hand_without_depth_cannot_be_lifted():
    obs, depth = observation(hand_points_base())
    with pytest.raises(LiftError, match="no depth"):
        lift_hand(obs, np.zeros_like(depth), CAMERA, T_BASE_CAMERA)


# ---------------------------------------------------------------------------------------------- plausibility, frames
def test_bone_length_check_accepts_a_hand_and_rejects_implausible_ones():
    p = hand_points_base()
    assert check_bone_lengths(p) is None
    np.testing.assert_allclose(bone_lengths(p), NOMINAL_BONE_LENGTH_M, atol=1e-9)
    assert "hand size" in check_bone_lengths(3.0 * p)
    broken = p.copy()
    broken[12] += [0.0, 0.0, 0.06]  # middle fingertip 6 cm off (a depth error the outlier test missed)
    assert "bone length" in check_bone_lengths(broken)
    assert check_bone_lengths(np.full((21, 3), np.nan)) is not None


@pytest.mark.parametrize("handedness", ["right", "left"])
def test_wrist_frame_axes(handedness):
    T_base_wrist = wrist_frame(hand_points_base(mirror=handedness == "left"), handedness)
    R = T_base_wrist[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    R_hand = T_BASE_HAND[:3, :3]
    np.testing.assert_allclose(T_base_wrist[:3, 3], T_BASE_HAND[:3, 3], atol=1e-12)
    np.testing.assert_allclose(R[:, 0], R_hand[:, 0], atol=1e-9)  # toward the middle finger
    np.testing.assert_allclose(R[:, 2], R_hand[:, 2], atol=1e-9)  # out of the palm, for both hands


# ---------------------------------------------------------------------------------------------- filtering
def test_one_euro_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(0, 4, 1 / 30)
    noisy = 0.3 + rng.normal(0, 0.003, len(t))
    f = OneEuroFilter(OneEuroConfig(min_cutoff_hz=1.0, beta=0.0))
    smoothed = np.array([f(np.array([x]), ti)[0] for x, ti in zip(noisy, t)])
    assert np.std(smoothed[30:]) < 0.4 * np.std(noisy[30:])

    ramp = 0.5 * t  # 0.5 m/s
    lag = {}
    for beta in (0.0, 20.0):
        f = OneEuroFilter(OneEuroConfig(min_cutoff_hz=1.0, beta=beta))
        out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(ramp, t)])
        lag[beta] = np.mean(ramp[60:] - out[60:])
    assert lag[20.0] < 0.3 * lag[0.0]  # the speed term cuts the lag
    assert lag[20.0] > 0

    f = OneEuroFilter()
    first = f(np.array([1.0, 2.0]), 1.0)
    np.testing.assert_array_equal(first, [1.0, 2.0])  # the first sample passes through
    np.testing.assert_array_equal(f(np.array([5.0, 5.0]), 1.0), first)  # a repeated stamp changes nothing


class ScriptedDetector:
    """Returns prepared observations, one list per call."""

    name = "scripted"

    def __init__(self, frames):
        self.frames = list(frames)

    def detect(self, color_rgb8):
        return self.frames.pop(0)

    def close(self):
        pass


def test_pipeline_filters_over_time_reports_no_hand_and_restarts_after_a_gap():
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    rng = np.random.default_rng(1)
    shaky = [HandObservation(uv_px=obs.uv_px + rng.normal(0, 1.5, (21, 2)), rel_depth_px=obs.rel_depth_px,
                             handedness="right", score=0.9) for _ in range(30)]
    frames = [[o] for o in shaky] + [[]] + [[shaky[0]]]
    pipeline = HandPipeline(ScriptedDetector(frames), T_BASE_CAMERA, HandPipelineConfig(filter_reset_s=0.5))
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    raw_err, filt_err = [], []
    for k in range(30):
        result = pipeline.process(image, depth, CAMERA, t_s=k / 30)
        (hand,) = result.hands
        assert hand.handedness == "right" and hand.p_base_m.shape == (21, 3)
        raw_err.append(np.linalg.norm(hand.p_base_raw_m - p_true, axis=1).mean())
        filt_err.append(np.linalg.norm(hand.p_base_m - p_true, axis=1).mean())
    assert np.mean(filt_err[10:]) < 0.7 * np.mean(raw_err[10:])  # jitter from 2-D noise is filtered out
    empty = pipeline.process(image, depth, CAMERA, t_s=1.0)
    assert empty.hands == () and empty.detected == 0  # no hand: nothing, not the last keypoints
    after_gap = pipeline.process(image, depth, CAMERA, t_s=2.0)
    np.testing.assert_array_equal(after_gap.hands[0].p_base_m, after_gap.hands[0].p_base_raw_m)  # fresh filter


def test_pipeline_rejects_implausible_and_duplicate_hands_with_reasons():
    p_true = hand_points_base()
    obs, depth = observation(p_true)
    big, big_depth = observation(transform_points(T_BASE_HAND, 2.5 * canonical_right_hand()))
    weaker = HandObservation(uv_px=obs.uv_px, rel_depth_px=obs.rel_depth_px, handedness="right", score=0.3)
    pipeline = HandPipeline(ScriptedDetector([[weaker, obs], [big]]), T_BASE_CAMERA)
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    result = pipeline.process(image, depth, CAMERA, 0.0)
    assert len(result.hands) == 1 and result.hands[0].score == pytest.approx(0.9)
    assert result.rejected[0][1].startswith("duplicate")
    result = pipeline.process(image, big_depth, CAMERA, 0.1)
    assert result.hands == () and result.detected == 1
    assert result.rejected[0][1].startswith("implausible hand size")


def test_primary_hand_is_the_one_reported():
    right, depth = observation(hand_points_base(), "right", score=0.6)
    left_p = hand_points_base(make_transform([0.7, -0.2, 0.3], T_BASE_HAND[:3, :3]), mirror=True)
    left, left_depth = observation(left_p, "left", score=0.9)
    both = np.minimum(depth, left_depth)
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    for primary, frames, expected in (("right", [[right, left]], "right"), ("left", [[right, left]], "left"),
                                      ("any", [[right, left]], "left"), ("right", [[left]], None)):
        pipeline = HandPipeline(ScriptedDetector(frames), T_BASE_CAMERA, HandPipelineConfig(primary_hand=primary))
        result = pipeline.process(image, both, CAMERA, 0.0)
        assert len(result.hands) == len(frames[0])  # every accepted hand (for markers)
        assert (result.primary.handedness if result.primary else None) == expected
    with pytest.raises(ValueError):
        HandPipelineConfig(primary_hand="both")


# ---------------------------------------------------------------------------------------------- detectors
@pytest.fixture(scope="module")
def mediapipe_detector():
    detector = make_hand_detector("mediapipe", max_num_hands=2, model_complexity=1, not_an_option=1)
    yield detector
    detector.close()


def test_mediapipe_loads_from_the_wheel_and_sees_no_hand_in_an_empty_image(mediapipe_detector, monkeypatch):
    from mediapipe.python.solutions import download_utils

    def no_downloads(*args, **kwargs):
        raise AssertionError("MediaPipe tried to download a model")

    monkeypatch.setattr(download_utils, "download_oss_model", no_downloads)
    assert isinstance(mediapipe_detector, MediaPipeHandDetector)
    blank = np.zeros((480, 640, 3), np.uint8)
    assert mediapipe_detector.detect(blank) == []
    assert mediapipe_detector.detect(np.full((480, 640, 3), 200, np.uint8)) == []
    with pytest.raises(ValueError):
        mediapipe_detector.detect(np.zeros((480, 640), np.uint8))


def test_mediapipe_results_convert_to_pixels_and_the_persons_handedness():
    lm = [SimpleNamespace(x=0.5 + 0.01 * k, y=0.25, z=-0.001 * k) for k in range(21)]
    results = SimpleNamespace(
        multi_hand_landmarks=[SimpleNamespace(landmark=lm)],
        multi_handedness=[SimpleNamespace(classification=[SimpleNamespace(label="Left", score=0.8)])])
    (obs,) = observations_from_mediapipe(results, 640, 480, mirrored_input=False)
    assert obs.handedness == "right" and obs.score == pytest.approx(0.8)  # MediaPipe assumes a mirrored image
    np.testing.assert_allclose(obs.uv_px[3], [640 * 0.53, 480 * 0.25])
    np.testing.assert_allclose(obs.rel_depth_px[3], -0.003 * 640)
    (mirrored,) = observations_from_mediapipe(results, 640, 480, mirrored_input=True)
    assert mirrored.handedness == "left"
    assert observations_from_mediapipe(SimpleNamespace(multi_hand_landmarks=None, multi_handedness=None),
                                       640, 480) == []


class PluginDetector:
    name = "plugin"

    def __init__(self, max_num_hands: int = 1):
        self.max_num_hands = max_num_hands

    def detect(self, color_rgb8):
        return []

    def close(self):
        pass


def test_a_detector_can_be_swapped_by_name():
    detector = make_hand_detector(f"{__name__}:PluginDetector", max_num_hands=3, model_complexity=1)
    assert isinstance(detector, PluginDetector) and detector.max_num_hands == 3
    with pytest.raises(ValueError, match="unknown hand detector"):
        make_hand_detector("openpose")
    with pytest.raises(ValueError, match="cannot be imported"):
        make_hand_detector("no_such_module:Detector")


def test_a_label_passed_to_another_hand_does_not_blend_the_two_hands():
    """MediaPipe's handedness label can flip between two hands in view: the filter kept under that label must not
    average the operator's hand with a bystander's 25 cm away (the reported hand would jump halfway between)."""
    p_a = hand_points_base()
    p_b = hand_points_base(make_transform([0.75, -0.20, 0.35], rpy_to_matrix([0.3, -0.9, 2.6])))
    obs_a, depth_a = observation(p_a)
    obs_b, depth_b = observation(p_b)
    pipeline = HandPipeline(ScriptedDetector([[obs_a]] * 5 + [[obs_b]]), T_BASE_CAMERA, HandPipelineConfig())
    for k in range(5):
        pipeline.process(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), depth_a, CAMERA, k / 30)
    result = pipeline.process(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), depth_b, CAMERA, 5 / 30)
    np.testing.assert_allclose(result.primary.p_base_m, result.primary.p_base_raw_m)  # a fresh filter
    assert np.linalg.norm(result.primary.p_base_m - p_b, axis=1).max() < 0.005
