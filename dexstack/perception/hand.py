"""3-D human hand keypoints in the robot base frame from a 2-D hand detector and aligned depth. No ROS.

Keypoints: 21 in MediaPipe / MANO-21 order (:data:`KEYPOINT_NAMES`): wrist, then thumb CMC, MCP, IP, tip, then
index, middle, ring and pinky each MCP, PIP, DIP, tip. The pipeline per RGB-D frame:

1. a :class:`HandDetector` gives 2-D keypoints (pixels), the model's relative depth and the handedness;
2. :func:`lift_hand` lifts them to 3-D with the aligned depth (patch median; holes, edges and points that disagree
   with the model's relative depth fall back to the model's depth anchored on the measured keypoints) and moves
   them to the base frame with the camera extrinsics ``T_base_camera``;
3. :func:`check_bone_lengths` rejects anatomically implausible frames;
4. a One-Euro filter per hand smooths the keypoints over time; the wrist 6-D pose is computed from them
   (:func:`wrist_frame`).

Frames: camera = REP-103 optical frame of the color stream; base = the calibration's parent frame (robot base).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from dexstack.camera_model import CameraModel
from dexstack.perception.depth import DepthPatchConfig, DepthStatus, sample_depth
from dexstack.perception.geometry import transform_points
from dexstack.perception.one_euro import OneEuroConfig, OneEuroFilter

NUM_KEYPOINTS = 21
KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
WRIST, THUMB_TIP, INDEX_MCP, INDEX_TIP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 0, 4, 5, 8, 9, 13, 17
FINGERTIPS = (4, 8, 12, 16, 20)
# (parent, child) keypoint pairs: the kinematic tree of the hand.
BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16),
    (0, 17), (17, 18), (18, 19), (19, 20),
)
# Typical adult bone lengths between the keypoints above, metres (same order as BONES).
NOMINAL_BONE_LENGTH_M = np.array([
    0.040, 0.040, 0.032, 0.028,
    0.090, 0.042, 0.025, 0.021,
    0.088, 0.046, 0.028, 0.022,
    0.082, 0.042, 0.027, 0.022,
    0.076, 0.034, 0.019, 0.019,
])
HANDEDNESS = ("right", "left")


class DepthSource(str, Enum):
    MEASURED = "measured"  # the aligned depth image
    MODEL = "model"  # the detector's relative depth, anchored on the measured keypoints


@dataclass(frozen=True)
class HandObservation:
    """One hand in one image, as a detector sees it."""

    uv_px: np.ndarray  # (21, 2) keypoints in the color image, pixels (u right, v down)
    rel_depth_px: np.ndarray  # (21,) model depth relative to the wrist, in pixel units at the hand (+ = farther)
    handedness: str  # "right" | "left": the person's hand
    score: float  # detection / handedness confidence in [0, 1]
    keypoint_scores: np.ndarray | None = None  # (21,) per-keypoint confidence in [0, 1], if the detector has one

    def __post_init__(self) -> None:
        if np.shape(self.uv_px) != (NUM_KEYPOINTS, 2) or np.shape(self.rel_depth_px) != (NUM_KEYPOINTS,):
            raise ValueError("a hand observation needs 21 (u, v) keypoints and 21 relative depths")
        if self.handedness not in HANDEDNESS:
            raise ValueError(f"handedness '{self.handedness}' is not one of {HANDEDNESS}")


class HandDetector(Protocol):
    """A 2-D hand keypoint detector. Implementations: :mod:`dexstack.perception.hand_detectors`."""

    name: str

    def detect(self, color_rgb8: np.ndarray) -> list[HandObservation]:
        """Hands in an (H, W, 3) uint8 RGB image; an empty list when there is none."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class LiftConfig:
    patch: DepthPatchConfig = field(default_factory=DepthPatchConfig)
    outlier_tolerance_m: float = 0.03  # a measured depth this far from the model's prediction is an outlier
    min_measured_keypoints: int = 4  # fewer usable depths: the hand cannot be placed in 3-D
    model_depth_confidence: float = 0.5  # confidence factor of keypoints whose depth comes from the model
    surface_offset_m: float = 0.0  # added to measured depths: skin surface -> joint centre (0: keypoints on skin)
    # A measured keypoint whose bone from its parent is implausibly long or short (its depth is another finger's or
    # the palm's: a fist, a finger over the palm) hangs off the parent with the model's depth instead. Bones within
    # this fraction of their nominal length (scaled to the hand) pass; 0 turns the repair off.
    bone_repair_tolerance: float = 0.4


@dataclass(frozen=True)
class LiftedHand:
    p_camera_m: np.ndarray  # (21, 3) keypoints in the camera optical frame
    p_base_m: np.ndarray  # (21, 3) keypoints in the base frame
    depth_source: tuple[DepthSource, ...]  # (21,)
    confidence: np.ndarray  # (21,) in [0, 1]
    depth_status: tuple[DepthStatus, ...]  # (21,) what the depth patch said

    @property
    def n_measured(self) -> int:
        return sum(s is DepthSource.MEASURED for s in self.depth_source)


class LiftError(ValueError):
    """The hand cannot be placed in 3-D (too few usable depths)."""


def lift_hand(observation: HandObservation, depth: np.ndarray, camera: CameraModel, T_base_camera: np.ndarray,
              config: LiftConfig | None = None, depth_scale_m: float = 0.001) -> LiftedHand:
    """Lift a 2-D hand to 3-D with an aligned (H, W) depth image. Raises :class:`LiftError` when fewer than
    ``min_measured_keypoints`` keypoints have a depth consistent with the hand's shape."""
    c = config or LiftConfig()
    uv = np.asarray(observation.uv_px, dtype=float)
    sample = sample_depth(depth, uv, c.patch, depth_scale_m)
    z_meas = sample.z_m
    measured = sample.valid.copy()
    if measured.sum() < c.min_measured_keypoints:
        raise LiftError(f"no depth: only {int(measured.sum())} keypoints have depth "
                        f"(need {c.min_measured_keypoints})")
    rel = np.asarray(observation.rel_depth_px, dtype=float)
    # The model's relative depth is in pixel units at the hand: metres = px * Z / fx. Anchor it on the measured
    # keypoints (median of the implied wrist depth), drop measurements that disagree, and anchor again.
    z_anchor = 0.0
    for _ in range(2):
        z_ref = float(np.median(z_meas[measured]))
        dz = rel * z_ref / camera.fx
        z_anchor = float(np.median(z_meas[measured] - dz[measured]))
        consistent = np.abs(z_meas - (z_anchor + dz)) <= c.outlier_tolerance_m
        measured &= consistent
        if measured.sum() < c.min_measured_keypoints:
            raise LiftError(f"depth inconsistent: only {int(measured.sum())} keypoint depths agree with the "
                            f"hand's shape (need {c.min_measured_keypoints})")
    z = np.where(measured, z_meas + c.surface_offset_m, z_anchor + dz)
    # A keypoint without usable depth (a hole, an edge, an outlier) hangs off its parent along the bone with the
    # model's relative depth: one bone's relative-depth error instead of the whole hand's (fingertips in holes
    # move ~1 cm instead of ~3 cm). BONES lists parents before children.
    for parent, child in BONES:
        if not measured[child]:
            z[child] = z[parent] + (dz[child] - dz[parent])
    if c.bone_repair_tolerance > 0:
        z = _repair_bones(uv, z, dz, measured, camera, c.bone_repair_tolerance)
    p_camera = camera.unproject(uv, z)
    p_base = transform_points(T_base_camera, p_camera)
    kp_scores = np.ones(NUM_KEYPOINTS) if observation.keypoint_scores is None else np.asarray(
        observation.keypoint_scores, dtype=float)
    confidence = np.clip(observation.score * kp_scores * np.where(measured, 1.0, c.model_depth_confidence), 0, 1)
    return LiftedHand(
        p_camera_m=p_camera, p_base_m=p_base,
        depth_source=tuple(DepthSource.MEASURED if m else DepthSource.MODEL for m in measured),
        confidence=confidence, depth_status=sample.status,
    )


def _repair_bones(uv: np.ndarray, z: np.ndarray, dz: np.ndarray, measured: np.ndarray, camera: CameraModel,
                  tolerance: float) -> np.ndarray:
    """Parents before children: a measured child whose bone is off by more than ``tolerance`` of its expected
    length (nominal x the hand's scale, the median ratio over all bones) hangs off its parent with the model's
    relative depth; hung children follow their re-placed parents. ``measured`` is updated in place."""
    z = z.copy()
    p = camera.unproject(uv, z)
    scale = float(np.median(bone_lengths(p) / NOMINAL_BONE_LENGTH_M))
    for k, (parent, child) in enumerate(BONES):
        hung = z[parent] + (dz[child] - dz[parent])
        if not measured[child]:
            z[child] = hung
            continue
        a, b = camera.unproject(uv[[parent, child]], z[[parent, child]])
        expected = scale * NOMINAL_BONE_LENGTH_M[k]
        if abs(np.linalg.norm(b - a) - expected) > tolerance * expected:
            measured[child] = False
            z[child] = hung
    return z


@dataclass(frozen=True)
class BoneCheckConfig:
    min_scale: float = 0.6  # hand size relative to the nominal adult hand (median bone ratio)
    max_scale: float = 1.5
    relative_tolerance: float = 0.5  # each bone within this fraction of its scaled nominal length ...
    absolute_tolerance_m: float = 0.015  # ... or within this many metres, whichever is larger


def bone_lengths(p_m: np.ndarray) -> np.ndarray:
    """(20,) lengths of :data:`BONES` for (21, 3) keypoints, metres."""
    p = np.asarray(p_m, dtype=float)
    return np.linalg.norm(p[[b for _, b in BONES]] - p[[a for a, _ in BONES]], axis=1)


def check_bone_lengths(p_m: np.ndarray, config: BoneCheckConfig | None = None) -> str | None:
    """Why (21, 3) keypoints are not a plausible human hand ("<kind>: <detail>"), or None if they are."""
    c = config or BoneCheckConfig()
    lengths = bone_lengths(p_m)
    if not np.all(np.isfinite(lengths)):
        return "non-finite keypoints: NaN or inf"
    scale = float(np.median(lengths / NOMINAL_BONE_LENGTH_M))
    if not c.min_scale <= scale <= c.max_scale:
        return f"implausible hand size: {scale:.2f}x nominal, outside [{c.min_scale}, {c.max_scale}]"
    expected = scale * NOMINAL_BONE_LENGTH_M
    tolerance = np.maximum(c.relative_tolerance * expected, c.absolute_tolerance_m)
    bad = np.flatnonzero(np.abs(lengths - expected) > tolerance)
    if len(bad):
        a, b = BONES[bad[0]]
        return (f"implausible bone length: {len(bad)} bone(s), e.g. {KEYPOINT_NAMES[a]}-{KEYPOINT_NAMES[b]} "
                f"{1000 * lengths[bad[0]]:.0f} mm (expected {1000 * expected[bad[0]]:.0f} mm)")
    return None


def wrist_frame(p_m: np.ndarray, handedness: str) -> np.ndarray:
    """T_frame_wrist (4x4) from (21, 3) keypoints in some frame.

    Origin at the wrist keypoint; x toward the middle-finger MCP; z the palm normal, pointing out of the palm
    (``cross(index_mcp - wrist, pinky_mcp - wrist)`` for a right hand, the opposite for a left hand), made
    orthogonal to x; y = z x x (toward the pinky side of a right hand, the thumb side of a left hand).
    """
    p = np.asarray(p_m, dtype=float)
    x = p[MIDDLE_MCP] - p[WRIST]
    x /= np.linalg.norm(x)
    z = np.cross(p[INDEX_MCP] - p[WRIST], p[PINKY_MCP] - p[WRIST])
    if handedness == "left":
        z = -z
    z -= (z @ x) * x
    z /= np.linalg.norm(z)
    T = np.eye(4)
    T[:3, :3] = np.column_stack((x, np.cross(z, x), z))
    T[:3, 3] = p[WRIST]
    return T


@dataclass(frozen=True)
class HandPipelineConfig:
    lift: LiftConfig = field(default_factory=LiftConfig)
    bones: BoneCheckConfig = field(default_factory=BoneCheckConfig)
    filter: OneEuroConfig = field(default_factory=OneEuroConfig)
    filter_reset_s: float = 0.5  # a hand unseen for longer starts a fresh filter
    # Filters are kept per handedness label, and MediaPipe's label can flip between two hands in view: a filter
    # whose last wrist is farther than this from the hand it gets starts afresh instead of blending two hands.
    filter_jump_reset_m: float = 0.1
    primary_hand: str = "any"  # "right" | "left" | "any": the hand to report (see HandFrameResult.primary)

    def __post_init__(self) -> None:
        if self.primary_hand not in ("any", *HANDEDNESS):
            raise ValueError(f"primary_hand '{self.primary_hand}' is not one of any, right, left")


@dataclass(frozen=True)
class HandEstimate:
    handedness: str
    score: float
    p_base_m: np.ndarray  # (21, 3) filtered keypoints, base frame
    p_base_raw_m: np.ndarray  # (21, 3) this frame's keypoints before filtering
    confidence: np.ndarray  # (21,) in [0, 1]
    depth_source: tuple[DepthSource, ...]
    T_base_wrist: np.ndarray  # 4x4 wrist pose in the base frame (see wrist_frame)


@dataclass(frozen=True)
class HandFrameResult:
    t_s: float  # stamp of the image, seconds
    hands: tuple[HandEstimate, ...]  # accepted hands, primary_hand ones first, then by score; empty = no hand
    detected: int  # hands the detector reported
    rejected: tuple[tuple[str, str], ...]  # (handedness, "<kind>: <detail>") of detections dropped this frame
    primary_hand: str = "any"

    @property
    def primary(self) -> HandEstimate | None:
        """The hand to report: the ``primary_hand`` one ("any": the most confident), or None (no such hand)."""
        if self.hands and self.primary_hand in ("any", self.hands[0].handedness):
            return self.hands[0]
        return None


class HandPipeline:
    """Detector + lifting + plausibility + temporal filter. One instance per camera stream; not thread-safe."""

    def __init__(self, detector: HandDetector, T_base_camera: np.ndarray, config: HandPipelineConfig | None = None,
                 depth_scale_m: float = 0.001):
        self.detector = detector
        self.T_base_camera = np.asarray(T_base_camera, dtype=float)
        self.config = config or HandPipelineConfig()
        self.depth_scale_m = depth_scale_m
        self._filters: dict[str, OneEuroFilter] = {}
        # The last reported hand (wrist in the image, pixels; stamp): with two hands in view the one that continues
        # it stays the reported one, so a second person's hand cannot take the robot over.
        self._tracked: tuple[np.ndarray, float] | None = None

    def reset(self) -> None:
        self._filters.clear()
        self._tracked = None

    def _tracked_uv(self, t_s: float) -> np.ndarray | None:
        if self._tracked is None or t_s - self._tracked[1] > self.config.filter_reset_s:
            return None
        return self._tracked[0]

    def process(self, color_rgb8: np.ndarray, depth: np.ndarray, camera: CameraModel, t_s: float
                ) -> HandFrameResult:
        return self.process_observations(self.detector.detect(color_rgb8), depth, camera, t_s)

    def process_observations(self, observations: Sequence[HandObservation], depth: np.ndarray,
                             camera: CameraModel, t_s: float) -> HandFrameResult:
        """The pipeline after detection (tests feed synthetic observations here)."""
        c = self.config
        best: dict[str, HandObservation] = {}
        rejected: list[tuple[str, str]] = []
        tracked_uv = self._tracked_uv(t_s)

        def rank(o: HandObservation) -> float:  # lower is better: near the tracked hand, else confident
            return float(np.linalg.norm(o.uv_px[0] - tracked_uv)) if tracked_uv is not None else -o.score

        for obs in observations:  # one hand per label: keep the tracked (else the more confident) duplicate
            if obs.handedness in best:
                loser = max(obs, best[obs.handedness], key=rank)
                why = "farther from the tracked hand" if tracked_uv is not None else "the less confident one"
                rejected.append((obs.handedness, f"duplicate handedness: {why} dropped"))
                if loser is best[obs.handedness]:
                    best[obs.handedness] = obs
            else:
                best[obs.handedness] = obs
        hands: list[HandEstimate] = []
        for label, obs in best.items():
            try:
                lifted = lift_hand(obs, depth, camera, self.T_base_camera, c.lift, self.depth_scale_m)
            except LiftError as exc:
                rejected.append((label, str(exc)))
                continue
            reason = check_bone_lengths(lifted.p_base_m, c.bones)
            if reason is not None:
                rejected.append((label, reason))
                continue
            filt = self._filters.setdefault(label, OneEuroFilter(c.filter))
            last = filt.last_value
            if (filt.last_time_s is not None and t_s - filt.last_time_s > c.filter_reset_s) or (
                    last is not None and np.linalg.norm(last[WRIST] - lifted.p_base_m[WRIST]) > c.filter_jump_reset_m):
                filt.reset()
            p_filtered = filt(lifted.p_base_m, t_s)
            hands.append(HandEstimate(
                handedness=label, score=float(obs.score), p_base_m=p_filtered, p_base_raw_m=lifted.p_base_m,
                confidence=lifted.confidence, depth_source=lifted.depth_source,
                T_base_wrist=wrist_frame(p_filtered, label),
            ))
        for label, filt in self._filters.items():  # forget hands that have been gone too long
            if label not in {h.handedness for h in hands} and filt.last_time_s is not None \
                    and t_s - filt.last_time_s > c.filter_reset_s:
                filt.reset()
        hands.sort(key=lambda h: (h.handedness != c.primary_hand, rank(best[h.handedness])))
        if len(hands) > 1:
            rejected.append((hands[1].handedness, "second hand: not reported (the tracked or more confident "
                             "hand is)"))
        result = HandFrameResult(t_s=float(t_s), hands=tuple(hands), detected=len(observations),
                                 rejected=tuple(rejected), primary_hand=c.primary_hand)
        if result.primary is not None:
            self._tracked = (best[result.primary.handedness].uv_px[0].copy(), float(t_s))
        return result
