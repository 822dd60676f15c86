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
    def __init__(self, description: RobotDescription, retarget_config: str = "allegro_right",
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
