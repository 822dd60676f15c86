"""Validation of joint commands as ros2_control controllers take them, independent of ROS message types.

A command is rejected with a :class:`CommandError` whose message says why; callers then hold the robot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CommandError(ValueError):
    """A malformed command: the reason is the message."""


def validate_positions(values: Sequence[float], expected_count: int, what: str = "command") -> np.ndarray:
    """A forward position command (std_msgs/Float64MultiArray): exactly ``expected_count`` finite values."""
    q = np.asarray(values, dtype=float).reshape(-1)
    if q.size != expected_count:
        raise CommandError(f"{what} has {q.size} values, expected {expected_count}")
    bad = np.flatnonzero(~np.isfinite(q))
    if bad.size:
        raise CommandError(f"{what} has non-finite values at indices {bad.tolist()}")
    return q


def validate_trajectory(
    joint_names: Sequence[str],
    positions: Sequence[Sequence[float]],
    times_from_start_s: Sequence[float],
    expected_joints: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """A joint trajectory (trajectory_msgs/JointTrajectory), as ros2_control's joint_trajectory_controller checks it.

    Returns ``(times_s (K,), positions_rad (K, n))`` with columns reordered to ``expected_joints``. Every expected
    joint must be named exactly once (no partial goals), every point must carry one finite position per joint,
    and times must be non-negative and strictly increasing. ``K == 0`` means "stop and hold".
    """
    names = list(joint_names)
    if not names:
        raise CommandError("trajectory names no joints")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CommandError(f"trajectory names joints more than once: {duplicates}")
    unknown = sorted(set(names) - set(expected_joints))
    if unknown:
        raise CommandError(f"trajectory names unknown joints {unknown}")
    missing = [n for n in expected_joints if n not in names]
    if missing:
        raise CommandError(f"trajectory is missing joints {missing} (partial goals are not accepted)")
    order = [names.index(n) for n in expected_joints]
    times = np.asarray(times_from_start_s, dtype=float).reshape(-1)
    if len(positions) != times.size:
        raise CommandError(f"{len(positions)} points but {times.size} times")
    q = np.empty((times.size, len(expected_joints)))
    for k, point in enumerate(positions):
        point = np.asarray(point, dtype=float).reshape(-1)
        if point.size != len(names):
            raise CommandError(f"point {k} has {point.size} positions for {len(names)} joints")
        if not np.all(np.isfinite(point)):
            raise CommandError(f"point {k} has non-finite positions")
        q[k] = point[order]
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise CommandError("time_from_start must be finite and non-negative")
    if np.any(np.diff(times) <= 0):
        raise CommandError("time_from_start must be strictly increasing")
    return times, q
