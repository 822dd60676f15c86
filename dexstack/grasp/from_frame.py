"""One RGB-D frame of a human grasp -> a robot grasp target: the existing perception cores, then retargeting.

Pipeline: ``hand_pose``'s core (:class:`~dexstack.perception.hand.HandPipeline`: MediaPipe 2-D keypoints lifted
with the depth image into the robot base frame, bone-length checks) and ``object_pose``'s core
(:class:`~dexstack.perception.object_pose.ObjectPoseEstimator`, model fit of ``config/objects/<name>.yaml``) ->
keypoints in the object frame -> :class:`~dexstack.retarget.functional.FunctionalRetargeter`.

Every failure is a :class:`GraspInputError` naming its cause (no hand, no object, hand not touching, no
non-penetrating solution, unreachable or colliding target); the caller then sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dexstack.camera_model import CameraModel
from dexstack.grasp.frame_choice import hand_consistent_frame
from dexstack.perception.hand import HandPipeline, HandPipelineConfig
from dexstack.perception.object_pose import ObjectPoseEstimator
from dexstack.perception.objects import ObjectModel
from dexstack.retarget.functional import FunctionalRetargeter, GraspRetargetError, GraspTarget
from dexstack.transforms import invert_transform, transform_points

# Where objects to grasp stand, robot base frame (m): in front of the robot, on the table. Depth outside is ignored
# by the object fit, so the robot's own base (a large cylinder at the origin) is never taken for a can.
DEFAULT_OBJECT_ROI_M = ((0.25, -0.5, -0.01), (0.9, 0.5, 0.5))
# A fitted object this close to upright and to its resting height stands on the table: its height is set to where it
# rests (the table plane is calibrated; the depth fit's height is off by tenths of a millimetre).
STANDING_MAX_TILT_RAD = np.deg2rad(10.0)
STANDING_MAX_HEIGHT_ERROR_M = 0.01


def standing_on_table(model: ObjectModel, T_base_object: np.ndarray, table_z_base_m: float) -> np.ndarray:
    """``T_base_object`` with its height set to the model's resting height above the table (``table_z_base_m``) when
    the fit shows the object standing upright on it; otherwise (tilted, lifted, on something else) as fitted.

    Why: the grasp's table plane in the object frame is ``table_z_base_m - z``, and the verified retargeting's
    choice among its candidates changes with it by fractions of a millimetre (juice_box top_precision: candidate 3
    at the resting height, 6 at the fit's 0.2 mm lower, which knocked the box over on the graph). Resting on the
    table, the object's frame is exactly where bench/grasp.py and the policy's training bank plan it."""
    T = np.array(T_base_object, dtype=float)
    rest_z = table_z_base_m + model.rest_height_m
    if T[2, 2] >= np.cos(STANDING_MAX_TILT_RAD) and abs(T[2, 3] - rest_z) <= STANDING_MAX_HEIGHT_ERROR_M:
        T[2, 3] = rest_z
    return T


def mask_depth_outside(depth: np.ndarray, camera: CameraModel, T_base_camera: np.ndarray, depth_scale_m: float,
                       roi_base_m) -> np.ndarray:
    """``depth`` with every pixel whose point lies outside the base-frame box ``roi_base_m`` set to 0 (no data)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    z = depth.astype(float) * depth_scale_m
    p_cam = camera.unproject(np.column_stack((u.ravel(), v.ravel())).astype(float), z.ravel())
    p = transform_points(T_base_camera, p_cam).reshape(h, w, 3)
    lo, hi = np.asarray(roi_base_m[0]), np.asarray(roi_base_m[1])
    inside = np.all((p >= lo) & (p <= hi), axis=2) & (z > 0)
    return np.where(inside, depth, 0).astype(depth.dtype)


class GraspInputError(ValueError):
    """A frame that gives no usable grasp target; the message names the cause."""


@dataclass(frozen=True)
class FrameGrasp:
    target: GraspTarget
    T_base_object: np.ndarray  # the object's pose from the frame
    keypoints_base_m: np.ndarray  # (21, 3) the human hand from the frame, base frame
    hand_score: float
    object_fitness: float


class GraspFromFrame:
    """Holds the detector and the retargeter (slow to build); one instance serves many frames."""

    def __init__(self, model: ObjectModel, T_base_camera: np.ndarray, camera: CameraModel, depth_scale_m: float,
                 detector=None, retargeter: FunctionalRetargeter | None = None, contact_gap_m: float = 0.02,
                 object_roi_base_m=DEFAULT_OBJECT_ROI_M, verify: bool = False):
        if detector is None:
            from dexstack.perception.hand_detectors import MediaPipeHandDetector

            detector = MediaPipeHandDetector(static_image_mode=True, max_num_hands=2)
        self.model, self.camera, self.depth_scale_m = model, camera, depth_scale_m
        self.object_roi_base_m = object_roi_base_m
        self.T_base_camera = np.asarray(T_base_camera, dtype=float)
        self.detector = detector
        # Detected keypoints sit centimetres off (MediaPipe + depth): ``contact_gap_m``, a wider contact band than
        # the retargeter's own. Exact keypoints (a library grasp, the simulator's hand) keep the retargeter's band:
        # the one bench/grasp.py and the grasp policy's training targets use (with 20 mm the sim_grasp graph marked
        # about twice the library grasps' keypoints as contacts and ran other targets than the bench).
        self.retargeter = retargeter or FunctionalRetargeter()
        self.detected_retargeter = (self.retargeter if contact_gap_m == self.retargeter.config.contact_gap_m
                                    else _with_gap(self.retargeter, contact_gap_m))
        # verify: the first retargeting candidate whose open-loop grasp lifts the object in the sim grasp cell
        # (dexstack/grasp/verify.py, as bench/grasp.py and the training bank use), each with its contact band
        self.verify = verify
        self._verifiers: dict[float, object] = {}

    def verifier(self, retargeter: FunctionalRetargeter):
        """The verifier of ``retargeter``'s candidates (built on first use: a MuJoCo grasp cell)."""
        gap = retargeter.config.contact_gap_m
        if gap not in self._verifiers:
            from dexstack.grasp.verify import VerifiedRetargeter  # noqa: PLC0415 (MuJoCo only when asked)

            self._verifiers[gap] = VerifiedRetargeter(retarget_config=retargeter.config)
        return self._verifiers[gap]

    def estimate(self, color_rgb8: np.ndarray, depth: np.ndarray, object_color_rgb8: np.ndarray | None = None,
                 object_depth: np.ndarray | None = None, table_z_base_m: float | None = 0.0,
                 keypoints_base_m: np.ndarray | None = None,
                 keypoints_object_m: np.ndarray | None = None) -> FrameGrasp:
        """The grasp target of one frame. ``object_*``: a frame to take the object's pose from instead (the
        same view without the hand, when the hand hides too much of the object). ``keypoints_base_m``: skip the
        hand detector and use these (ground truth in the sim, for isolating the retargeting);
        ``keypoints_object_m``: the same in the object frame (a library human grasp: only the object's pose comes
        from the frame); with both, the library grasp held as ``keypoints_base_m`` shows (the simulator's object
        pose): the fitted frame of a symmetric object is turned to the hand's (:mod:`dexstack.grasp.frame_choice`)."""
        detected = keypoints_object_m is None and keypoints_base_m is None
        if keypoints_object_m is not None:
            score = 1.0
        elif keypoints_base_m is None:
            pipeline = HandPipeline(self.detector, self.T_base_camera, HandPipelineConfig(), self.depth_scale_m)
            result = pipeline.process(color_rgb8, depth, self.camera, 0.0)
            hand = result.primary
            if hand is None:
                why = "; ".join(f"{h}: {r}" for h, r in result.rejected) or "the detector found none"
                raise GraspInputError(f"no hand in the frame ({result.detected} detected; {why})")
            keypoints_base_m, score = hand.p_base_raw_m, hand.score
        else:
            score = 1.0
        estimator = ObjectPoseEstimator(self.model, self.T_base_camera, depth_scale_m=self.depth_scale_m)
        object_depth = depth if object_depth is None else object_depth
        if self.object_roi_base_m is not None:
            object_depth = mask_depth_outside(object_depth, self.camera, self.T_base_camera, self.depth_scale_m,
                                              self.object_roi_base_m)
        pose = estimator.estimate(color_rgb8 if object_color_rgb8 is None else object_color_rgb8,
                                  object_depth, self.camera, 0.0)
        if not pose.tracking:
            raise GraspInputError(f"no '{self.model.name}' in the frame: {pose.reason or pose.lost_kind}")
        T_base_object = pose.T_base_object
        kp_object = None if keypoints_object_m is None else np.asarray(keypoints_object_m, dtype=float)
        if kp_object is not None and keypoints_base_m is not None:  # the library grasp as the hand holds it: a
            # symmetric object's fitted frame turned to the one the hand holds it in (upright frame)
            T_base_object = hand_consistent_frame(self.model, T_base_object, keypoints_base_m, kp_object).T_base_object
        if table_z_base_m is not None:
            T_base_object = standing_on_table(self.model, T_base_object, table_z_base_m)
        if kp_object is not None:  # the grasp lands where the fitted object is
            keypoints_base_m = transform_points(T_base_object, kp_object)
        else:
            kp_object = transform_points(invert_transform(T_base_object), keypoints_base_m)
        # the table plane in the object frame (object upright on it)
        table_z = None if table_z_base_m is None else float(table_z_base_m - T_base_object[2, 3])
        retargeter = self.detected_retargeter if detected else self.retargeter
        try:
            if self.verify and table_z is not None:
                target = self.verifier(retargeter).retarget(self.model, kp_object, table_z_m=table_z).target
            else:
                target = retargeter.retarget(self.model, kp_object, table_z_m=table_z)
        except GraspRetargetError as exc:
            raise GraspInputError(str(exc)) from None
        return FrameGrasp(target, T_base_object, np.asarray(keypoints_base_m), float(score), float(pose.fitness))

    def close(self) -> None:
        self.detector.close()


def _with_gap(base: FunctionalRetargeter, gap_m: float) -> FunctionalRetargeter:
    return FunctionalRetargeter(replace(base.config, contact_gap_m=gap_m), base.description)


def target_to_dict(target: GraspTarget, T_base_object: np.ndarray | None = None) -> dict:
    """A grasp target as plain YAML/JSON data (poses as xyz + quaternion xyzw, object frame)."""
    from dexstack.transforms import matrix_to_quat_xyzw

    def pose(T):
        return {"xyz_m": [round(float(v), 5) for v in T[:3, 3]],
                "quat_xyzw": [round(float(v), 6) for v in matrix_to_quat_xyzw(T[:3, :3])]}

    out = {"object": target.object_name, "T_object_palm": pose(target.T_object_palm),
           "q_hand_rad": [round(float(v), 4) for v in target.q_hand_rad],
           "T_object_palm_pregrasp": pose(target.T_object_palm_pregrasp),
           "q_pregrasp_rad": [round(float(v), 4) for v in target.q_pregrasp_rad],
           "links": list(target.link_names),
           "link_positions_object_m": [[round(float(v), 4) for v in p] for p in target.link_positions_object_m],
           "contact_mask": [bool(c) for c in target.contact_mask],
           "human_contact_fingers": list(target.human_contact_fingers),
           "robot_contact_fingers": list(target.robot_contact_fingers),
           "contact_match": round(target.contact_match, 3),
           "max_penetration_m": round(target.max_penetration_m, 4), "retarget_ms": round(target.retarget_ms, 1)}
    if T_base_object is not None:
        out["T_base_object"] = pose(T_base_object)
    return out
