"""TeleopController: the teleoperation logic, independent of ROS.

Input: the 21 human keypoints in the robot base frame (what ``hand_pose`` publishes), the measured joint positions.
Output: arm joint targets (IK of the palm target that follows the human wrist) and hand joint targets
(retargeting), or nothing. Controls: a clutch (``engage``/``disengage``: engaging takes the current human and
robot poses as the reference, so the robot never jumps), ``recenter`` (engage again where both are now), and
``pause``. Losing the hand for longer than ``hand_lost_timeout_s`` disengages: the source stops sending and the
safety monitor's watchdog holds the robot; the next engage starts from the new poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.retarget import ArmIK, HandRetargeter, KeypointError, WristMapper, hand_frame_from_keypoints
from dexstack.retarget.arm import WristMapperConfig
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics


@dataclass
class TeleopConfig:
    retarget_config: str = ""  # config/retarget/<name>.yaml; "": the shipped config made for the robot profile
    method: str = "dexpilot"  # vector | position | dexpilot
    hand_side: str | None = None  # the human hand tracked: None = the retargeting config's ``hand_side``
    position_scale: float = 1.0  # robot palm displacement per metre of human wrist displacement
    hand_lost_timeout_s: float = 0.3
    auto_engage: bool = False  # engage as soon as a hand is seen (and again after it was lost)


@dataclass(frozen=True)
class TeleopCommand:
    arm_rad: np.ndarray  # description.arm_joints order
    hand_rad: np.ndarray  # description.hand_joints order
    ik_converged: bool


class TeleopController:
    def __init__(self, description: RobotDescription, config: TeleopConfig | None = None):
        self.description = description
        self.config = config or TeleopConfig()
        self.hand = HandRetargeter.from_file(self.config.retarget_config, self.config.method, description)
        self.hand_side = self.config.hand_side or self.hand.config.hand_side
        self.arm = ArmIK(description)
        self.kinematics = Kinematics(description)
        self.mapper = WristMapper(self.hand.T_root_H, WristMapperConfig(position_scale=self.config.position_scale))
        self.paused = False
        self.last_hand_time_s = -np.inf
        self.last_reason = ""
        self._T_base_H: np.ndarray | None = None  # latest human hand frame in the base frame
        self._n_arm = len(description.arm_joints)

    @property
    def engaged(self) -> bool:
        return self.mapper.engaged

    # ------------------------------------------------------------------ controls
    def engage(self, q_meas_rad: np.ndarray) -> tuple[bool, str]:
        """Start following from the current human and robot poses (also re-centres). Needs a recent hand."""
        if self._T_base_H is None:
            return False, "no hand seen yet: show your hand to the camera"
        palm = self.description.profile.hand.palm_link
        T_base_palm = self.kinematics.frame_pose(np.asarray(q_meas_rad, dtype=float), palm)
        self.mapper.engage(self._T_base_H, T_base_palm)
        self.arm.reset(q_meas_rad[: self._n_arm])
        self.hand.reset(q_meas_rad[self._n_arm:])
        return True, "engaged: the robot follows your hand from here"

    def disengage(self, reason: str = "disengaged") -> None:
        self.mapper.disengage()
        self.last_reason = reason

    def set_paused(self, paused: bool) -> None:
        """Pausing stops commands; resuming needs an engage (a new reference), so the robot never jumps."""
        self.paused = paused
        if paused:
            self.disengage("paused")

    def check_hand_lost(self, now_s: float) -> bool:
        """True (and disengaged) when no hand was seen for ``hand_lost_timeout_s``."""
        lost = now_s - self.last_hand_time_s > self.config.hand_lost_timeout_s
        if lost and self.engaged:
            self.disengage(f"hand lost for more than {self.config.hand_lost_timeout_s} s: holding")
        return lost

    # ------------------------------------------------------------------ step
    def step(self, keypoints_base_m: np.ndarray, q_meas_rad: np.ndarray, now_s: float) -> TeleopCommand | None:
        """One tracked hand (21, 3) in the base frame -> joint targets, or None (not engaged, paused, bad input).

        Raises KeypointError for keypoints that cannot be a hand (NaN, degenerate palm); the caller holds.
        """
        kp = np.asarray(keypoints_base_m, dtype=float)
        T_base_H = hand_frame_from_keypoints(kp, self.hand_side)  # raises KeypointError
        self._T_base_H = T_base_H
        self.last_hand_time_s = now_s
        if self.paused:
            return None
        if not self.engaged:
            if not self.config.auto_engage:
                return None
            self.engage(q_meas_rad)
        kp_H = (kp - T_base_H[:3, 3]) @ T_base_H[:3, :3]
        q_hand = self.hand.retarget(kp_H)
        target = self.mapper.update(T_base_H)
        if target is None:
            return None
        ik = self.arm.solve(target, q_meas_rad[: self._n_arm])
        return TeleopCommand(arm_rad=ik.q_rad, hand_rad=q_hand, ik_converged=ik.converged)


__all__ = ["KeypointError", "TeleopCommand", "TeleopConfig", "TeleopController"]
