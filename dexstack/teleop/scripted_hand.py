"""A scripted "human hand" for the simulated cell: 21 keypoints in the robot base frame over time.

The fingers move through a smooth random motion of the robot hand itself (so the retargeted answer is known, see
:mod:`dexstack.retarget.synthetic`), the wrist traces a slow ellipse in front of the robot. The whole teleop loop
then runs without a person or a camera.
"""

from __future__ import annotations

import numpy as np

from dexstack.retarget import HandRetargeter
from dexstack.retarget.synthetic import RobotHandKeypoints, smooth_joint_trajectory
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics


class ScriptedHumanHand:
    def __init__(self, description: RobotDescription, retarget_config: str = "",
                 rate_hz: float = 30.0, duration_s: float = 20.0, wrist_amplitude_m: float = 0.06,
                 wrist_period_s: float = 8.0, finger_max_freq_hz: float = 0.25, seed: int = 0):
        retargeter = HandRetargeter.from_file(retarget_config, None, description)
        self.rate_hz = rate_hz
        self.n_frames = int(duration_s * rate_hz)
        hand = retargeter.hand
        self.q_hand_rad = smooth_joint_trajectory(hand.lower_rad, hand.upper_rad, self.n_frames, rate_hz, seed,
                                                  finger_max_freq_hz)
        self._to_keypoints = RobotHandKeypoints(retargeter.config, hand)
        # The human wrist starts where the robot's wrist analogue is at home, so engaging does not move the robot.
        kin = Kinematics(description)
        T_base_palm = kin.frame_pose(description.home(), description.profile.hand.palm_link)
        self.T_base_H0 = T_base_palm @ retargeter.T_root_H
        self.amplitude_m = wrist_amplitude_m
        self.period_s = wrist_period_s

    def T_base_H(self, t_s: float) -> np.ndarray:
        """Human hand frame at ``t_s``: an ellipse in the base x-y plane, starting at rest at the home pose."""
        phase = 2 * np.pi * t_s / self.period_s
        T = self.T_base_H0.copy()
        T[:3, 3] += self.amplitude_m * np.array([0.5 * np.sin(phase), np.sin(phase / 2) ** 2, 0.0])
        return T

    def frame_index(self, t_s: float) -> int:
        return int(t_s * self.rate_hz) % self.n_frames

    def keypoints_base(self, t_s: float) -> np.ndarray:
        """(21, 3) keypoints in the robot base frame at ``t_s`` (loops after the scripted duration)."""
        kp_H = self._to_keypoints(self.q_hand_rad[self.frame_index(t_s)])
        T = self.T_base_H(t_s)
        return kp_H @ T[:3, :3].T + T[:3, 3]


# One scripted operator session for the rendered hand: (duration_s, shape, wrist offset from the rest pose in the
# base frame (dx, dy, dz) metres, wrist rotation in the hand frame (roll about the forearm, pitch, yaw) degrees,
# grasp). Each segment eases from the previous keyframe to its own. It starts at rest (engaging does not move the
# robot) and ends where it started, so it loops.
GESTURES: tuple[tuple[float, str, tuple[float, float, float], tuple[float, float, float], bool], ...] = (
    (2.0, "open", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), False),
    (2.0, "relaxed", (0.04, 0.03, 0.02), (0.0, 0.0, 0.0), False),
    (2.0, "pinch", (0.06, 0.0, -0.02), (0.0, 10.0, 0.0), False),
    (1.5, "open", (0.0, -0.03, 0.0), (0.0, 0.0, 0.0), False),
    (2.5, "open", (0.0, 0.0, 0.0), (60.0, 0.0, 0.0), False),  # wrist rotations up to +/-60 deg
    (2.5, "relaxed", (0.0, 0.0, 0.0), (-60.0, 0.0, 0.0), False),
    (2.0, "open", (0.02, 0.0, 0.03), (0.0, -25.0, 20.0), False),
    (2.0, "point", (0.05, 0.02, 0.0), (0.0, 0.0, -20.0), False),
    (2.0, "power", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), False),
    (2.0, "power", (0.03, -0.05, 0.05), (20.0, 0.0, 0.0), False),
    (2.0, "open", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), False),
    (2.5, "open", (0.0, 0.36, 0.0), (0.0, 0.0, 0.0), False),  # partly out of the operator camera's view
    (2.5, "open", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), False),
)


class GestureScript:
    """The rendered hand's scripted motion: wrist pose ``T_base_H(t)``, finger joints ``q(t)``
    (:data:`dexstack.sim.human_hand.JOINTS`) and the grasp flag, from :data:`GESTURES` (loops)."""

    def __init__(self, T_base_rest: np.ndarray, segments=GESTURES, speed: float = 1.0):
        from dexstack.sim.human_hand import POSES

        if speed <= 0:
            raise ValueError(f"speed {speed} must be > 0")
        self.T_rest = np.asarray(T_base_rest, dtype=float)
        self.segments = segments
        self.speed = speed
        self._poses = POSES
        self._ends = np.cumsum([s[0] for s in segments])
        self.period_s = float(self._ends[-1]) / speed

    def _keyframe(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, shape, dxyz, rpy_deg, _ = self.segments[k % len(self.segments)]
        return self._poses[shape], np.asarray(dxyz, float), np.radians(rpy_deg)

    def __call__(self, t_s: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """(T_base_H, q_rad, grasp) at ``t_s`` seconds."""
        from dexstack.transforms import rpy_to_matrix

        t = (t_s * self.speed) % float(self._ends[-1])
        k = int(np.searchsorted(self._ends, t, side="right"))
        start = self._ends[k - 1] if k > 0 else 0.0
        u = (t - start) / self.segments[k][0]
        w = 0.5 - 0.5 * np.cos(np.pi * u)  # eased: zero velocity at every keyframe
        q0, p0, r0 = self._keyframe(k - 1)
        q1, p1, r1 = self._keyframe(k)
        q = (1 - w) * q0 + w * q1
        T = self.T_rest.copy()
        T[:3, :3] = self.T_rest[:3, :3] @ rpy_to_matrix((1 - w) * r0 + w * r1)
        T[:3, 3] += (1 - w) * p0 + w * p1
        return T, q, bool(self.segments[k][4])
