"""Keeping an object's pose through occlusion (no ROS).

While the hand grasps or covers the object, the camera sees too little of it for a fit, and a global search finds
the hand instead. :class:`PoseKeeper` predicts where the object is from the last measured pose:

- ``attached``: the object was within ``attach_distance_m`` of the palm when last seen (grasped or about to be):
  it moves with the palm, ``T_base_object(t) = T_base_palm(t) T_palm_object`` (``T_palm_object`` from the last
  measurement), given the robot's joint state;
- ``velocity``: otherwise, constant velocity from the recent measurements (damped to rest over
  ``velocity_decay_s``: an object left alone stops);

for at most ``max_attached_s`` / ``max_prediction_s`` after the last measurement. The prediction seeds the model
fit (ICP) and gates re-acquisition (a fit far from it is on the hand, not the object). A predicted pose is
*stale*: its covariance grows with its age, from at least :data:`STALE_POSITION_STD_M`, so a consumer can tell it
from a measurement (position variance >= ``STALE_POSITION_STD_M ** 2``) and weigh it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dexstack.perception.geometry import invert_transform

STALE_POSITION_STD_M = 0.01  # a predicted pose is at least this uncertain (measured ones are ~1 mm)


@dataclass(frozen=True)
class PoseKeeperConfig:
    max_prediction_s: float = 2.0  # no velocity prediction beyond this age of the last measurement: lost
    max_attached_s: float = 10.0  # no prediction of an object held in the hand beyond this age
    attach_distance_m: float = 0.08  # object origin within this of the palm origin: it moves with the palm
    velocity_decay_s: float = 0.3  # time constant of the unattached object's velocity dying out
    velocity_smoothing: float = 0.5  # weight of the newest finite-difference velocity (exponential average)
    max_speed_m_s: float = 1.0  # velocities above this are measurement jumps, not motion
    position_std_growth_m_s: float = 0.05  # predicted position std grows by this per second of age ...
    # ... or this while it moves with the palm (the robot's state is known). Measured on the validation demos' kept
    # poses: the error is an offset set at the grasp (~1 cm) that hardly grows with age (9 mm at 0-0.5 s, 15 mm at
    # 4-10 s); 1 cm/s made the policy drop a held cube's pose after ~2 s (object_pose_max_std_m 3 cm) and stop.
    attached_std_growth_m_s: float = 0.002
    rotation_std_rad: float = 0.1  # predicted rotation std at age 0 ...
    rotation_std_growth_rad_s: float = 0.2  # ... growing by this per second

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value >= 0:
                raise ValueError(f"PoseKeeperConfig.{name} must be >= 0, got {value}")
        if not 0 < self.velocity_smoothing <= 1:
            raise ValueError("PoseKeeperConfig.velocity_smoothing must be in (0, 1]")


@dataclass(frozen=True)
class Prediction:
    T_base_object: np.ndarray
    covariance_base: np.ndarray  # 6x6 (x, y, z, rx, ry, rz), grown with the age
    age_s: float  # since the last measurement
    mode: str  # "attached" | "velocity"

    @property
    def rotation_std_rad(self) -> float:
        """The largest rotation std of the prediction (rad)."""
        return float(np.sqrt(max(self.covariance_base[3, 3], self.covariance_base[4, 4], self.covariance_base[5, 5])))

    @property
    def confidence(self) -> float:
        """1 for a measurement, falling towards 0 as the position std grows (1 cm -> 0.5)."""
        std = float(np.sqrt(max(self.covariance_base[0, 0], self.covariance_base[1, 1], self.covariance_base[2, 2])))
        return float(1.0 / (1.0 + (std / STALE_POSITION_STD_M) ** 2))


class PoseKeeper:
    def __init__(self, config: PoseKeeperConfig | None = None):
        self.config = config or PoseKeeperConfig()
        self.reset()

    def reset(self) -> None:
        self._last_t: float | None = None
        self._last_T: np.ndarray | None = None
        self._last_cov = np.zeros((6, 6))
        self._velocity = np.zeros(3)
        self._T_palm_object: np.ndarray | None = None

    @property
    def has_track(self) -> bool:
        return self._last_t is not None

    def measured(self, t_s: float, T_base_object: np.ndarray, covariance_base: np.ndarray | None,
                 T_base_palm: np.ndarray | None = None) -> None:
        """A measured pose at ``t_s`` (and the palm's pose then, if known)."""
        c = self.config
        T = np.asarray(T_base_object, dtype=float)
        if self._last_t is not None and t_s > self._last_t:
            v = (T[:3, 3] - self._last_T[:3, 3]) / (t_s - self._last_t)
            if np.linalg.norm(v) <= c.max_speed_m_s:
                self._velocity = c.velocity_smoothing * v + (1 - c.velocity_smoothing) * self._velocity
        self._last_t, self._last_T = float(t_s), T.copy()
        self._last_cov = np.zeros((6, 6)) if covariance_base is None else np.nan_to_num(covariance_base, nan=0.0)
        self._T_palm_object = None
        if T_base_palm is not None and np.linalg.norm(T[:3, 3] - T_base_palm[:3, 3]) <= c.attach_distance_m:
            self._T_palm_object = invert_transform(T_base_palm) @ T

    def predict(self, t_s: float, T_base_palm: np.ndarray | None = None) -> Prediction | None:
        """The predicted pose at ``t_s``, or None without a measurement in the last ``max_prediction_s``."""
        c = self.config
        if self._last_t is None:
            return None
        age = max(0.0, t_s - self._last_t)
        attached = self._T_palm_object is not None and T_base_palm is not None
        if age > (c.max_attached_s if attached else c.max_prediction_s):
            return None
        if attached:
            T, mode = T_base_palm @ self._T_palm_object, "attached"
        else:
            # integral of v exp(-s / tau) over [0, age]
            tau = c.velocity_decay_s
            travel = tau * (1.0 - np.exp(-age / tau)) if tau > 0 else 0.0
            T = self._last_T.copy()
            T[:3, 3] += self._velocity * travel
            mode = "velocity"
        growth = c.attached_std_growth_m_s if attached else c.position_std_growth_m_s
        pos_std = STALE_POSITION_STD_M + growth * age
        rot_std = c.rotation_std_rad + c.rotation_std_growth_rad_s * age
        cov = self._last_cov + np.diag([pos_std ** 2] * 3 + [rot_std ** 2] * 3)
        return Prediction(T, cov, age, mode)


@dataclass(frozen=True)
class TrackedFrame:
    """One frame through the estimator and the keeper, as the ``object_pose`` node handles it."""

    result: object  # the estimator's ObjectPoseResult
    prediction: Prediction | None  # the keeper's prediction that seeded the estimator
    T_base_object: np.ndarray | None  # what to publish: the measurement, else the kept prediction, else nothing
    covariance_base: np.ndarray | None
    kind: str  # "fresh" | "kept (<prediction mode>)" | "lost"


def track_frame(estimator, keeper: PoseKeeper, t_s: float, rgb: np.ndarray, depth: np.ndarray, camera,
                T_base_palm: np.ndarray | None, occluders=None, keep: bool = True) -> TrackedFrame:
    """The keeper's prediction seeds ``estimator.estimate``; a measurement updates the keeper and is published, a
    lost frame publishes the prediction while the keeper has one (``keep`` False: no prediction at all). Shared by
    the node and the in-process :class:`~dexstack.evaluation.perception_feed.PerceptionFeed`."""
    prediction = keeper.predict(t_s, T_base_palm) if keep else None
    allowed_m = estimator.config.max_robot_overlap_m
    if prediction is not None and occluders is not None and allowed_m > 0:
        # A held object moves with the palm, but the fingers close on it after its last measurement: the pose
        # carried with the palm can sit inside them. Move it out of the hand (by the least translation).
        T = occluders.push_out(estimator.model, prediction.T_base_object, allowed_m)
        prediction = replace(prediction, T_base_object=T)
    result = estimator.estimate(rgb, depth, camera, t_s, None if prediction is None else prediction.T_base_object,
                                occluders, 0.0 if prediction is None else prediction.rotation_std_rad)
    if result.tracking:
        keeper.measured(t_s, result.T_base_object, result.covariance_base, T_base_palm)
        return TrackedFrame(result, prediction, result.T_base_object, result.covariance_base, "fresh")
    if prediction is not None:
        return TrackedFrame(result, prediction, prediction.T_base_object, prediction.covariance_base,
                            f"kept ({prediction.mode})")
    return TrackedFrame(result, None, None, None, "lost")

