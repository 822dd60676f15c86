"""The object pose of a grasp trial from perception, as the ``sim_grasp`` graph gives it (issue 12's benchmark).

Two places use the object pose in a grasp:

1. **Planning.** ``grasp_target`` fits the object in one camera frame before the robot moves and places the
   object-frame grasp target (pre-grasp, grasp, lift palm poses) with that pose.
   :meth:`GraspPerception.initial` renders that frame (the object alone on the table, the robot at ``q``, usually
   home) in the grasp cell with the trial's object and runs the ``object_pose`` core on it
   (:class:`~dexstack.evaluation.perception_feed.PerceptionFeed`: estimator + pose keeper + the hand's self-filter,
   the node's ``table_roi`` as ``sim_grasp`` sets it). Given the trial's human grasp (object-frame keypoints), the
   fitted frame of a symmetric object is then turned into the one the seen hand holds it in
   (:func:`dexstack.grasp.frame_choice.hand_consistent_frame`; the hand as a perfect detector would see it, the
   library grasp on the true object): a grasp seen by the camera is expressed in whatever frame was fitted, so the
   fit's choice among equivalent frames does not move it.
2. **Tracking.** The policy sees the ``object_pose`` node's pose every control step. :class:`PerceivedBatch` wraps a
   grasp physics backend (:class:`~dexstack.policies.grasp.physics.MultiObjectBatch`) and replaces each env's
   observed object pose (``object_pose_obs``) by its feed's: the feed that measured the planning pose goes on
   tracking (the node runs from before the robot moves), its next frame one camera period after the first.

The simulator's pose stays the truth that success, rise and slip are measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.evaluation.perception_feed import FeedFrame, PerceptionFeed, stats
from dexstack.grasp.frame_choice import turned_pose


def tilt_deg(T_est: np.ndarray, T_true: np.ndarray) -> float:
    """Angle (deg) between the estimated and the true object z axes: the part of a rotation error that is not a
    turn about the vertical (which a body of revolution standing on the table does not show)."""
    c = float(np.clip(T_est[:3, 2] @ T_true[:3, 2], -1.0, 1.0))
    return float(np.degrees(np.arccos(c)))


@dataclass
class InitialPose:
    """The planning pose of one trial (``T_base_object`` None: the frame gave no pose; nothing is planned)."""

    object_name: str
    T_base_object: np.ndarray | None
    T_true: np.ndarray
    frame: FeedFrame
    feed: PerceptionFeed  # goes on tracking from this frame (PerceivedBatch)
    tilt_deg: float | None
    # the fitted frame turned to the hand's (object frame, T_base_object = T_published @ frame_turn; None: as fitted):
    # the feed's later poses are turned the same way (PerceivedBatch)
    frame_turn: np.ndarray | None = None
    turned_deg: float = 0.0

    @property
    def perceived(self) -> bool:
        return self.T_base_object is not None

    def row(self) -> dict:
        """JSON figures: perceived, err_mm, err_deg (the object's enumerated symmetries considered), tilt_deg."""
        f = self.frame
        out = {"perceived": self.perceived}
        if self.perceived:
            out.update(err_mm=round(f.err_mm, 2), err_deg=round(f.err_deg, 1), tilt_deg=round(self.tilt_deg, 1),
                       turned_deg=round(self.turned_deg, 1))
        else:
            out.update(why=f"{f.lost_kind}: {f.reason}"[:200])
        return out


class GraspPerception:
    """One rendering camera per object (the grasp cell with that object, no human hand), a fresh
    :class:`PerceptionFeed` per trial. Close it (EGL contexts) from the thread that made it."""

    def __init__(self, description, camera_hz: float = 15.0, table_roi: bool = True, config_overrides=None):
        self.description = description
        self.camera_hz = float(camera_hz)
        self.table_roi = bool(table_roi)
        self.config_overrides = dict(config_overrides or {})
        self._cameras: dict = {}

    def camera(self, object_name: str):
        if object_name not in self._cameras:
            from dexstack.policies.grasp.physics import grasp_cell  # noqa: PLC0415
            from dexstack.sim import SimCell  # noqa: PLC0415
            from dexstack.sim.camera import SimCamera  # noqa: PLC0415

            self._cameras[object_name] = SimCamera(SimCell(grasp_cell(object_name)))
        return self._cameras[object_name]

    def feed(self, object_name: str) -> PerceptionFeed:
        """A new feed (a fresh ``object_pose`` node) on ``object_name``'s camera."""
        return PerceptionFeed(self.description, camera=self.camera(object_name), camera_hz=self.camera_hz,
                              table_roi=self.table_roi, config_overrides=self.config_overrides)

    def initial(self, object_name: str, q_rad: np.ndarray, T_base_object_true: np.ndarray,
                keypoints_object_m: np.ndarray | None = None) -> InitialPose:
        """The planning pose: the first frame of a new feed with the robot at ``q_rad`` and the object at its true
        pose (the feed is left at that frame, ready to track). ``keypoints_object_m``: the trial's human grasp; the
        fitted frame is turned to the one its hand holds the object in (module docstring)."""
        from dexstack.grasp.frame_choice import hand_consistent_frame  # noqa: PLC0415
        from dexstack.perception.objects import load_object_model  # noqa: PLC0415
        from dexstack.transforms import invert_transform, matrix_to_quat_xyzw, transform_points  # noqa: PLC0415

        T = np.asarray(T_base_object_true, dtype=float)
        feed = self.feed(object_name)
        obj = np.concatenate([T[:3, 3], matrix_to_quat_xyzw(T[:3, :3])])
        f = feed.frame(0.0, np.asarray(q_rad, dtype=float), obj)
        feed.next_frame_s = 1.0 / feed.camera_hz
        T_pub = f.T_published
        if T_pub is None:
            return InitialPose(object_name, None, T, f, feed, None)
        T_plan, turn, turned = T_pub.copy(), None, 0.0
        if keypoints_object_m is not None:
            kp = np.asarray(keypoints_object_m, dtype=float)
            choice = hand_consistent_frame(load_object_model(object_name), T_pub, transform_points(T, kp), kp)
            if choice.turned_deg > 0.0:
                T_plan, turned = choice.T_base_object, choice.turned_deg
                turn = invert_transform(T_pub) @ T_plan
        return InitialPose(object_name, T_plan, T, f, feed, tilt_deg(T_pub, f.T_true), turn, turned)

    def close(self) -> None:
        for camera in self._cameras.values():
            camera.close()
        self._cameras.clear()


def initial_summary(poses: list[InitialPose], wrong_mm: float = 15.0, wrong_tilt_deg: float = 10.0) -> dict:
    """Figures over planning poses: ``frames``, ``perceived_fraction``, ``hand_turned`` (frames turned to the
    hand's, :meth:`GraspPerception.initial`), ``err_mm``/``err_deg``/``tilt_deg`` stats,
    ``wrong`` (perceived more than ``wrong_mm`` or ``wrong_tilt_deg`` of tilt off)."""
    ok = [p for p in poses if p.perceived]
    return {"frames": len(poses), "perceived_fraction": round(len(ok) / max(len(poses), 1), 3),
            "hand_turned": sum(p.turned_deg > 0.0 for p in ok),
            "err_mm": stats([p.frame.err_mm for p in ok]), "err_deg": stats([p.frame.err_deg for p in ok]),
            "tilt_deg": stats([p.tilt_deg for p in ok]),
            "wrong": sum(p.frame.err_mm > wrong_mm or p.tilt_deg > wrong_tilt_deg for p in ok)}


def tracking_summary(feeds: list[PerceptionFeed]) -> dict:
    """Figures over the tracked frames of several feeds (the initial frame excluded): ``frames``,
    ``fresh_fraction`` (measured), ``published_fraction`` (measured or kept), ``fresh_err_mm``/``_deg``/``_tilt_deg``
    and ``kept_err_mm`` stats, ``wrong_fresh_frames`` (more than the feed's ``wrong_mm`` off)."""
    frames = [f for feed in feeds for f in feed.frames[1:]]
    n = len(frames)
    fresh = [f for f in frames if f.kind == "fresh"]
    kept = [f for f in frames if f.kind.startswith("kept")]
    wrong_mm = feeds[0].wrong_mm if feeds else 15.0
    return {"frames": n, "fresh_fraction": round(len(fresh) / max(n, 1), 3),
            "published_fraction": round(sum(f.T_published is not None for f in frames) / max(n, 1), 3),
            "fresh_err_mm": stats([f.err_mm for f in fresh]), "fresh_err_deg": stats([f.err_deg for f in fresh]),
            "fresh_tilt_deg": stats([tilt_deg(f.T_published, f.T_true) for f in fresh]),
            "kept_err_mm": stats([f.err_mm for f in kept]),
            "wrong_fresh_frames": sum(f.err_mm > wrong_mm for f in fresh)}


class PerceivedBatch:
    """A grasp physics backend whose observed object pose (``object_pose_obs``) is env ``i``'s feed's
    (``feeds[i]``; None: the backend's own). Feeds come from :meth:`GraspPerception.initial` and go on tracking
    from their first frame: at an env's reset the feed's clock is one camera period after that frame, then it
    advances ``period_s`` per step. Reset each env once per feed (an evaluation: one episode per env)."""

    def __init__(self, backend, feeds: list[PerceptionFeed | None], period_s: float,
                 turns: list[np.ndarray | None] | None = None):
        if len(feeds) != backend.n_envs:
            raise ValueError(f"{len(feeds)} feeds for {backend.n_envs} envs")
        self.backend, self.feeds, self.period_s = backend, list(feeds), float(period_s)
        # per env: the planning frame's turn (InitialPose.frame_turn), applied to every pose its feed gives
        self.turns = list(turns) if turns is not None else [None] * backend.n_envs
        if len(self.turns) != backend.n_envs:
            raise ValueError(f"{len(self.turns)} frame turns for {backend.n_envs} envs")
        self.n_envs = backend.n_envs
        self.env_object = getattr(backend, "env_object", None)
        self.description = backend.description
        self.clock = np.zeros(self.n_envs)
        self.calls = 0  # feed calls (tests)

    @property
    def out(self) -> dict:
        return self.backend.out

    @property
    def unstable_count(self) -> int:
        return self.backend.unstable_count

    def _perceive(self, ids) -> None:
        out = self.backend.out
        for i in ids:
            feed = self.feeds[i]
            if feed is None:
                continue
            pose = feed(float(self.clock[i]), out["q"][i], out["dq"][i], out["object_pose"][i])
            if self.turns[i] is not None and feed.perceived is not None:  # (no pose yet: the feed gives the truth)
                pose = turned_pose(pose, self.turns[i])
            out["object_pose_obs"][i] = pose
            self.calls += 1

    def reset(self, ids, q, object_pose, friction_scale, mass_scale) -> None:
        self.backend.reset(ids, q, object_pose, friction_scale, mass_scale)
        ids = np.asarray(ids, dtype=int)
        for i in ids:
            feed = self.feeds[i]
            if feed is not None:
                self.clock[i] = 1.0 / feed.camera_hz
        self._perceive(ids)

    def step(self, targets: np.ndarray) -> dict:
        self.backend.step(targets)
        self.clock += self.period_s
        self._perceive(range(self.n_envs))
        return self.backend.out
