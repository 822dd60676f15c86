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
    def end_time_s(self) -> float:
        return float(self._times[-1])


class TrajectoryBatch:
    """:class:`TrajectoryFollower` for N independent trajectories at once (the safety gate of N training
    environments): the same rules row by row, vectorised over rows. Rows hold different numbers of points; a row's
    unused columns repeat its last point at time +inf."""

    def __init__(self, n_rows: int, n_joints: int):
        self._times = np.full((n_rows, 2), np.inf)
        self._times[:, 0] = 0.0
        self._q = np.zeros((n_rows, 2, n_joints))
        self._last = np.zeros(n_rows, dtype=int)  # index of each row's last point

    def hold(self, rows: np.ndarray, q: np.ndarray) -> None:
        """Rows ``rows`` hold ``q`` (len(rows), n) (one point at time 0)."""
        self._times[rows] = np.inf
        self._times[rows, 0] = 0.0
        self._q[rows] = np.asarray(q, dtype=float)[:, None, :]
        self._last[rows] = 0

    def set(self, rows: np.ndarray, start_time_s: np.ndarray, times_from_start_s: np.ndarray,
            positions: np.ndarray) -> None:
        """New trajectories for ``rows``: per row a start time, shared ``times_from_start_s`` (K,), positions
        (len(rows), K, n). Each starts at the row's current setpoint (:meth:`TrajectoryFollower.set`)."""
        rows = np.asarray(rows, dtype=int)
        start = np.asarray(start_time_s, dtype=float)
        current = self.sample(start, rows)
        if len(times_from_start_s) == 0:
            self.hold(rows, current)
            return
        times = start[:, None] + np.asarray(times_from_start_s, dtype=float)[None, :]  # (M, K)
        q = np.asarray(positions, dtype=float)
        ramp = times[:, 0] > start  # ramp from the current setpoint to the first point
        k = times.shape[1] + 1
        if k > self._times.shape[1]:
            self._grow(k)
        new_t = np.full((len(rows), self._times.shape[1]), np.inf)
        new_q = np.empty((len(rows), self._times.shape[1], q.shape[2]))
        new_t[ramp, 0], new_q[ramp, 0] = start[ramp], current[ramp]
        new_t[ramp, 1:k], new_q[ramp, 1:k] = times[ramp], q[ramp]
        new_t[~ramp, : k - 1], new_q[~ramp, : k - 1] = times[~ramp], q[~ramp]
        last = np.where(ramp, k - 1, k - 2)
        new_q[~ramp, k - 1:] = q[~ramp, -1:]
        new_q[ramp, k:] = q[ramp, -1:]
        self._times[rows], self._q[rows], self._last[rows] = new_t, new_q, last

    def _grow(self, k: int) -> None:
        n_rows, old = self._times.shape
        times = np.full((n_rows, k), np.inf)
        times[:, :old] = self._times
        q = np.empty((n_rows, k, self._q.shape[2]))
        q[:, :old] = self._q
        q[:, old:] = self._q[:, -1:]
        self._times, self._q = times, q

    def sample(self, t_s: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Setpoints (len(rows), n) of rows ``rows`` (default all) at their times ``t_s``."""
        times, q = (self._times, self._q) if rows is None else (self._times[rows], self._q[rows])
        last = self._last if rows is None else self._last[rows]
        t = np.asarray(t_s, dtype=float)
        idx = np.arange(len(times))
        # The segment t falls in: the last point at or before t (searchsorted 'right' - 1), as the single follower.
        k = np.clip((times <= t[:, None]).sum(axis=1) - 1, 0, times.shape[1] - 2)
        t0, t1 = times[idx, k], times[idx, k + 1]
        span = t1 - t0  # > 0 and finite wherever ``inner`` is used (times strictly increase); 1 elsewhere
        alpha = ((t - t0) / np.where(np.isfinite(span) & (span > 0.0), span, 1.0))[:, None]
        inner = (1.0 - alpha) * q[idx, k] + alpha * q[idx, k + 1]
        before = (t <= times[:, 0])[:, None]
        after = (t >= times[idx, last])[:, None]
        return np.where(before, q[:, 0], np.where(after, q[idx, last], inner))

    def end_time_s(self, rows: np.ndarray | None = None) -> np.ndarray:
        last = self._last if rows is None else self._last[rows]
        times = self._times if rows is None else self._times[rows]
        return times[np.arange(len(times)), last]
