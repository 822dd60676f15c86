"""The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012): an adaptive low-pass filter for noisy tracking.

The cutoff frequency grows with the signal's speed: ``cutoff = min_cutoff_hz + beta * |dx/dt|``, so a still hand
is smoothed hard (little jitter) and a moving one follows with little lag. Vectorised: one filter per element of
an array of any fixed shape (e.g. 21 keypoints x 3 coordinates, metres). Time is in seconds (message stamps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    min_cutoff_hz: float = 1.0  # cutoff at rest: lower = less jitter, more lag
    beta: float = 5.0  # speed coefficient (per metre/s for positions in metres): higher = less lag when moving
    d_cutoff_hz: float = 1.0  # cutoff of the derivative estimate

    def __post_init__(self) -> None:
        if self.min_cutoff_hz <= 0 or self.d_cutoff_hz <= 0 or self.beta < 0:
            raise ValueError(f"invalid One-Euro parameters {self}: cutoffs must be > 0 and beta >= 0")


def _alpha(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters arrays of one shape over time. ``reset()`` forgets the history (e.g. after the hand was lost)."""

    def __init__(self, config: OneEuroConfig | None = None):
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t_s: float | None = None

    @property
    def initialized(self) -> bool:
        return self._x is not None

    @property
    def last_time_s(self) -> float | None:
        return self._t_s

    @property
    def last_value(self) -> np.ndarray | None:
        """The last filtered value (a copy), None before the first sample or after a reset."""
        return None if self._x is None else self._x.copy()

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Filtered value of sample ``x`` taken at time ``t_s``. A sample not newer than the last one (a repeated
        or out-of-order stamp) returns the current estimate unchanged."""
        x = np.asarray(x, dtype=float)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t_s = x.copy(), np.zeros_like(x), float(t_s)
            return x.copy()
        dt = float(t_s) - self._t_s
        if dt <= 0.0:
            return self._x.copy()
        c = self.config
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(c.d_cutoff_hz, dt) * (dx - self._dx)
        cutoff = c.min_cutoff_hz + c.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t_s = float(t_s)
        return self._x.copy()
