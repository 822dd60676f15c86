"""The object pose node's core run in-process on a simulated camera: the object pose an in-process episode's policy
would receive from perception (no rclpy, no DDS, no timing).

:class:`PerceptionFeed` is the ``perceive`` hook of :func:`dexstack.policies.tracking.env.run_episode`. On every
camera frame due (``camera_hz``, from the episode's t = 0) it places the robot and object of the physics backend in a
rendering :class:`~dexstack.sim.SimCell` (the same cell model), renders RGB-D with
:class:`~dexstack.sim.camera.SimCamera` and runs :class:`~dexstack.perception.object_pose.ObjectPoseEstimator` +
:class:`~dexstack.perception.pose_keeper.PoseKeeper` exactly as the ``object_pose`` node does: the keeper's
prediction (palm from the joint state) seeds the estimator, the hand's capsules are its self-filter (the node's
``robot_self_filter``), a measured pose is published and remembered, a lost frame publishes the kept pose while the
keeper has one. Between frames the policy sees the last published pose (the node publishes per frame, the policy
uses the latest). Before anything was published the hook returns the simulator's pose (the deployed runtime would
have no object pose); :attr:`truth_steps` counts those steps.

Each frame is recorded (:class:`FeedFrame`: kind, error against the simulator's pose, why lost) and
:meth:`PerceptionFeed.summary` reduces them (fractions, error statistics, lost reasons).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeedFrame:
    t_s: float  # the frame's time in the episode
    kind: str  # "fresh" (measured) | "kept (attached)" | "kept (velocity)" | "lost" (nothing published)
    T_true: np.ndarray  # the simulator's object pose at the frame (4x4, base frame)
    T_palm: np.ndarray  # the palm pose from the joint state
    T_published: np.ndarray | None  # what the node publishes for this frame (None: nothing)
    err_mm: float | None  # published vs true (the object's symmetries considered)
    err_deg: float | None
    init: str  # the estimator's init method ("" when lost)
    reason: str  # the estimator's reason (why the frame was not measured)
    lost_kind: str  # one of the estimator's LOST_KINDS ("" when measured)


def reason_key(reason: str) -> str:
    """The first attempt's reason without its numbers (for counting)."""
    first = reason.split(";")[0].strip()
    return re.sub(r"[-0-9.]+", "#", first)


def stats(values) -> dict:
    """``{"n", "median", "p95", "max"}`` of ``values`` (rounded to 0.01), ``{"n": 0}`` if empty."""
    if not len(values):
        return {"n": 0}
    v = np.asarray(values, dtype=float)
    return {"n": int(len(v)), "median": round(float(np.median(v)), 2), "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2)}


class PerceptionFeed:
    """In-process object pose from perception. ``reset()`` before each episode, then pass the feed as
    ``run_episode(..., perceive=feed)``; ``summary()`` after it. ``camera``: a :class:`~dexstack.sim.camera.SimCamera`
    to share between feeds (its cell must have the backend's model layout); default: the feed's own scene camera
    (closed by :meth:`close`). ``cell``: a cell name or :class:`~dexstack.sim.config.CellConfig` (its object is the
    one perceived: e.g. ``dexstack.policies.grasp.physics.grasp_cell(name)``). ``table_roi``: ignore depth outside
    the table workspace box, as the ``object_pose`` node's ``table_roi`` (on in ``sim_grasp``)."""

    def __init__(self, description, camera=None, camera_hz: float = 15.0, self_filter: bool = True,
                 config_overrides: dict | None = None, wrong_mm: float = 15.0, cell="tabletop",
                 table_roi: bool = False):
        from dexstack.perception.objects import load_object_model  # noqa: PLC0415
        from dexstack.robot.kinematics import Kinematics  # noqa: PLC0415
        from dexstack.safety.collision import CollisionModel  # noqa: PLC0415
        from dexstack.sim import SimCell  # noqa: PLC0415
        from dexstack.sim.camera import SimCamera  # noqa: PLC0415
        from dexstack.sim.scene import OBJECT_JOINT  # noqa: PLC0415

        self._own_camera = camera is None
        self.camera = SimCamera(SimCell(cell)) if camera is None else camera
        self.cell = self.camera.cell
        model = self.cell.model
        self._qpos_adr = np.array([model.joint(j).qposadr[0] for j in description.joints])
        self._obj_qpos = model.joint(OBJECT_JOINT).qposadr[0]
        self.description = description
        self.object_model = load_object_model(self.cell.cell.object.name)
        self.calibration = self.cell.calibration
        self.config_overrides = dict(config_overrides or {})
        self.camera_hz = float(camera_hz)
        self.wrong_mm = float(wrong_mm)
        self.table_roi = bool(table_roi)
        self.kinematics = Kinematics(description)
        self.robot = CollisionModel(description) if self_filter else None
        self.palm_link = description.profile.hand.palm_link
        self.symmetries = self.object_model.symmetries()
        self.reset()

    def reset(self) -> None:
        """A new episode: a fresh estimator and keeper (as a restarted node), nothing published, no frames."""
        from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator  # noqa: PLC0415
        from dexstack.perception.pose_keeper import PoseKeeper  # noqa: PLC0415

        cal = self.calibration
        self.estimator = ObjectPoseEstimator(self.object_model, cal.T_parent_camera,
                                             ObjectPoseConfig(**self.config_overrides), cal.depth_scale_m)
        self.keeper = PoseKeeper()
        self.perceived: np.ndarray | None = None  # (7,) xyz + xyzw: the last published pose
        self.next_frame_s = 0.0
        self.frames: list[FeedFrame] = []
        self.truth_steps = 0  # perceive calls answered with the simulator's pose (nothing published yet)
        self.steps = 0

    def _render(self, now_s: float, q: np.ndarray, obj: np.ndarray):
        data = self.cell.data
        with self.cell.lock:
            data.qpos[self._qpos_adr] = q
            x, y, z, qx, qy, qz, qw = obj
            data.qpos[self._obj_qpos: self._obj_qpos + 7] = (x, y, z, qw, qx, qy, qz)
            data.time = now_s
        return self.camera.render()

    def frame(self, t_s: float, q: np.ndarray, obj: np.ndarray) -> FeedFrame:
        """One camera frame at ``t_s`` of the scene (robot ``q``, object ``obj`` xyz + xyzw) through the node's
        estimator + keeper; updates :attr:`perceived` when the node would publish."""
        from dexstack.perception.geometry import pose_error  # noqa: PLC0415
        from dexstack.perception.object_pose import Occluders  # noqa: PLC0415
        from dexstack.perception.pose_keeper import track_frame  # noqa: PLC0415
        from dexstack.transforms import matrix_to_quat_xyzw, pose_to_transform  # noqa: PLC0415

        image = self._render(t_s, q, obj)
        depth = image.depth_mm
        if self.table_roi:  # the node's table_roi: the workspace box only (never the robot's own base)
            from dexstack.grasp.from_frame import DEFAULT_OBJECT_ROI_M, mask_depth_outside  # noqa: PLC0415

            cal = self.calibration
            depth = mask_depth_outside(depth, cal.intrinsics, cal.T_parent_camera, cal.depth_scale_m,
                                       DEFAULT_OBJECT_ROI_M)
        T_true = pose_to_transform(obj[:3], obj[3:])
        T_palm = self.kinematics.frame_pose(q, self.palm_link)
        occluders = None if self.robot is None else Occluders(*self.robot.capsules_base(q, hand_only=True))
        tracked = track_frame(self.estimator, self.keeper, t_s, image.color_rgb8, depth,
                              self.calibration.intrinsics, T_palm, occluders)
        result, T_pub, kind = tracked.result, tracked.T_base_object, tracked.kind
        mm = deg = None
        if T_pub is not None:
            mm, deg = pose_error(T_pub, T_true, self.symmetries)
            self.perceived = np.concatenate([T_pub[:3, 3], matrix_to_quat_xyzw(T_pub[:3, :3])])
        f = FeedFrame(t_s=t_s, kind=kind, T_true=T_true, T_palm=T_palm, T_published=T_pub, err_mm=mm, err_deg=deg,
                      init=result.init, reason=result.reason, lost_kind=result.lost_kind)
        self.frames.append(f)
        return f

    def __call__(self, now_s: float, q: np.ndarray, dq: np.ndarray, obj: np.ndarray) -> np.ndarray:
        """``run_episode``'s ``perceive``: the frames due by ``now_s``, then the pose the policy sees."""
        period = 1.0 / self.camera_hz
        while self.next_frame_s <= now_s + 1e-9:
            self.frame(self.next_frame_s, q, obj)
            self.next_frame_s += period
        self.steps += 1
        if self.perceived is None:
            self.truth_steps += 1
            return obj
        return self.perceived.copy()

    # ------------------------------------------------------------------ results
    def errors(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """(fresh mm, fresh deg, kept mm, kept deg) over the recorded frames."""
        fresh = [f for f in self.frames if f.kind == "fresh"]
        kept = [f for f in self.frames if f.kind.startswith("kept")]
        return ([f.err_mm for f in fresh], [f.err_deg for f in fresh], [f.err_mm for f in kept],
                [f.err_deg for f in kept])

    def summary(self) -> dict:
        """Per-episode perception figures: ``frames``, ``fresh_fraction`` (measured), ``published_fraction``
        (measured or kept), ``wrong_fresh_frames`` (measured more than ``wrong_mm`` off), error statistics
        (mm / deg), ``lost_kinds`` (the 8 commonest first reasons), ``truth_fed_fraction`` (policy steps before
        anything was published, fed the simulator's pose)."""
        n = len(self.frames)
        fresh_mm, fresh_deg, kept_mm, kept_deg = self.errors()
        lost = Counter(f"{f.lost_kind}: {reason_key(f.reason)}" for f in self.frames if f.kind != "fresh")
        return {"frames": n, "fresh_fraction": round(len(fresh_mm) / max(n, 1), 3),
                "published_fraction": round(sum(f.T_published is not None for f in self.frames) / max(n, 1), 3),
                "wrong_fresh_frames": sum(mm > self.wrong_mm for mm in fresh_mm),
                "fresh_err_mm": stats(fresh_mm), "fresh_err_deg": stats(fresh_deg),
                "kept_err_mm": stats(kept_mm), "kept_err_deg": stats(kept_deg),
                "lost_kinds": dict(lost.most_common(8)),
                "truth_fed_fraction": round(self.truth_steps / max(self.steps, 1), 3)}

    def close(self) -> None:
        """Free the camera if the feed made it (idempotent; from the creating thread)."""
        if self._own_camera and self.camera is not None:
            self.camera.close()
            self.camera = None
