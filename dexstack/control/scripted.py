"""Scripted keyframe motions (``config/motions/*.yaml``): joint targets over time for demos and tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexstack.config_loader import ConfigError, check_keys, read_yaml, resolve_data_file
from dexstack.paths import data_path
from dexstack.robot.description import RobotDescription


class MotionError(ConfigError):
    """A motion file is missing or names joints the robot does not have."""


@dataclass(frozen=True)
class ScriptedMotion:
    times_s: np.ndarray  # (K,) strictly increasing, from 0
    arm_rad: np.ndarray  # (K, n_arm) in description.arm_joints order
    hand_rad: np.ndarray  # (K, n_hand) in description.hand_joints order

    @property
    def duration_s(self) -> float:
        return float(self.times_s[-1])

    def hand_at(self, t_s: float) -> np.ndarray:
        """Hand target at ``t_s`` (piecewise linear between keyframes, held after the last)."""
        return np.array([np.interp(t_s, self.times_s, self.hand_rad[:, j]) for j in range(self.hand_rad.shape[1])])

    def arm_at(self, t_s: float) -> np.ndarray:
        return np.array([np.interp(t_s, self.times_s, self.arm_rad[:, j]) for j in range(self.arm_rad.shape[1])])


def motion_path(name_or_path: str) -> Path:
    return resolve_data_file(name_or_path, "config/motions", what="motion", error=MotionError, known_as="motions")


def default_motion(robot_profile: str, name: str = "demo") -> str:
    """The motion ``name`` made for ``robot_profile``: ``<name>_<robot_profile>`` when that file exists, else
    ``name`` (a motion names joints, so each robot has its own; the unsuffixed one is the default profile's)."""
    specific = f"{name}_{robot_profile}"
    return specific if (data_path("config", "motions") / f"{specific}.yaml").is_file() else name


def load_motion(name_or_path: str, description: RobotDescription) -> ScriptedMotion:
    path = motion_path(name_or_path)
    raw = check_keys(read_yaml(path, MotionError), ("keyframes",), str(path), error=MotionError)
    keyframes = raw.get("keyframes") or []
    if not keyframes:
        raise MotionError(f"{path}: no keyframes")
    arm_index = {n: i for i, n in enumerate(description.arm_joints)}
    hand_index = {n: i for i, n in enumerate(description.hand_joints)}
    arm, hand = description.home(description.arm_joints), description.home(description.hand_joints)
    times, arms, hands = [], [], []
    for k, frame in enumerate(keyframes):
        check_keys(frame, ("t", "arm_rad", "hand_rad"), str(path), f"keyframes[{k}]", MotionError)
        for key, index, target in (("arm_rad", arm_index, arm), ("hand_rad", hand_index, hand)):
            for joint, value in (frame.get(key) or {}).items():
                if joint not in index:
                    part = key.removesuffix("_rad")  # motions name joints: a motion is made for one robot
                    raise MotionError(f"{path}: keyframe {k} names '{joint}', which is not among the {part} joints "
                                      f"of robot '{description.profile.name}' ({', '.join(index)})")
                target[index[joint]] = description.limits[joint].clip(float(value))
        times.append(float(frame.get("t", 0.0)))
        arms.append(arm.copy())
        hands.append(hand.copy())
    times_s = np.array(times)
    if times_s[0] != 0.0 or np.any(np.diff(times_s) <= 0):
        raise MotionError(f"{path}: keyframe times must start at 0 and strictly increase")
    return ScriptedMotion(times_s=times_s, arm_rad=np.array(arms), hand_rad=np.array(hands))
