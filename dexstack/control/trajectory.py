"""Trajectory execution as a joint_trajectory_controller does it: interpolate from where we are to the points."""

from __future__ import annotations

import numpy as np


class TrajectoryFollower:
    """Piecewise-linear position setpoints over time.

    A new trajectory starts at the current setpoint at ``start_time_s`` and replaces the old one (as JTC does for a
    goal with a zero header stamp). Before its first point it ramps from the current setpoint; after the last one it
    holds the last point. An empty trajectory holds the current setpoint.
    """

    def __init__(self, q0: np.ndarray):
        self._times = np.zeros(1)
        self._q = np.asarray(q0, dtype=float).reshape(1, -1).copy()

    def hold(self, q: np.ndarray) -> None:
        self._times = np.zeros(1)
        self._q = np.asarray(q, dtype=float).reshape(1, -1).copy()

    def set(self, start_time_s: float, times_from_start_s: np.ndarray, positions: np.ndarray) -> None:
        current = self.sample(start_time_s)
        if len(times_from_start_s) == 0:
            self.hold(current)
            return
        times = start_time_s + np.asarray(times_from_start_s, dtype=float)
        q = np.asarray(positions, dtype=float)
        if times[0] > start_time_s:
            times = np.concatenate(([start_time_s], times))
            q = np.vstack((current, q))
        self._times, self._q = times, q

    def sample(self, t_s: float) -> np.ndarray:
        times, q = self._times, self._q
        if t_s <= times[0]:
            return q[0].copy()
        if t_s >= times[-1]:
            return q[-1].copy()
        k = int(np.searchsorted(times, t_s, side="right")) - 1
        alpha = (t_s - times[k]) / (times[k + 1] - times[k])
        return (1.0 - alpha) * q[k] + alpha * q[k + 1]

    @property
    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """(times (K,), positions (K, n)) the setpoint interpolates between (read only)."""
        return self._times, self._q

    @property
    def end_time_s(self) -> float:
        return float(self._times[-1])
