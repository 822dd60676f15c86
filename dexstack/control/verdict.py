"""Did the robot do the motion it was asked for? Keyframes checked along the way, not only at the end.

A motion that ends where it started (the demo returns home) is "reached" at its end even when nothing moved; so
every keyframe is checked at its own time: within ``window_s`` of ``start_s + t_k`` some measured sample must be
within the tolerance of that keyframe (arm and hand separately), targets clamped into the limits the safety gate
keeps (``margin_rad`` inside the description's limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.control.scripted import ScriptedMotion
from dexstack.robot.description import RobotDescription


@dataclass(frozen=True)
class KeyframeCheck:
    index: int
    t_s: float  # keyframe time from the motion's start
    arm_error_rad: float  # best (over the window) max-abs joint error; inf: no sample in the window
    hand_error_rad: float
    ok: bool


def check_keyframes(motion: ScriptedMotion, description: RobotDescription, start_s: float, times_s: np.ndarray,
                    q_rad: np.ndarray, *, arm_tolerance_rad: float = 0.05, hand_tolerance_rad: float = 0.15,
                    window_s: float = 0.5, margin_rad: float = 0.02) -> list[KeyframeCheck]:
    """``times_s`` (N,) and ``q_rad`` (N, n_joints in description order): the measured joint states, on the same
    clock as ``start_s`` (when the motion was started)."""
    times_s = np.asarray(times_s, dtype=float)
    q_rad = np.asarray(q_rad, dtype=float).reshape(len(times_s), len(description.joints))
    n_arm = len(description.arm_joints)
    lim = description.limit_arrays()
    lower = np.minimum(lim["lower"] + margin_rad, (lim["lower"] + lim["upper"]) / 2)
    upper = np.maximum(lim["upper"] - margin_rad, (lim["lower"] + lim["upper"]) / 2)
    checks = []
    for k, t_k in enumerate(motion.times_s):
        expected = np.clip(np.concatenate([motion.arm_rad[k], motion.hand_rad[k]]), lower, upper)
        near = np.abs(times_s - (start_s + t_k)) <= window_s
        if not np.any(near):
            arm_err = hand_err = float("inf")
        else:
            err = np.abs(q_rad[near] - expected)
            arm_err = float(np.min(np.max(err[:, :n_arm], axis=1)))
            hand_err = float(np.min(np.max(err[:, n_arm:], axis=1))) if err.shape[1] > n_arm else 0.0
        checks.append(KeyframeCheck(k, float(t_k), arm_err, hand_err,
                                    arm_err <= arm_tolerance_rad and hand_err <= hand_tolerance_rad))
    return checks
