"""Assemble the robot's joint state from /joint_states messages that may each carry only some joints.

On a real cell the arm and hand drivers publish /joint_states separately, in their own joint order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class JointStateCache:
    def __init__(self, joints: Sequence[str]):
        self.joints = tuple(joints)
        self._index = {name: i for i, name in enumerate(self.joints)}
        self._position = np.full(len(self.joints), np.nan)
        self._stamp = np.full(len(self.joints), -np.inf)

    def update(self, names: Sequence[str], positions: Sequence[float], now_s: float) -> None:
        """Record the joints of one message (unknown names are ignored; they belong to other robots/parts)."""
        for name, value in zip(names, positions):
            i = self._index.get(name)
            if i is not None:
                self._position[i] = value
                self._stamp[i] = now_s

    def positions(self, now_s: float, timeout_s: float) -> np.ndarray | None:
        """All joint positions in ``joints`` order if every joint was updated within ``timeout_s``, else None."""
        if np.any(now_s - self._stamp > timeout_s) or not np.all(np.isfinite(self._position)):
            return None
        return self._position.copy()

    def missing(self, now_s: float, timeout_s: float) -> list[str]:
        return [n for n, t in zip(self.joints, self._stamp) if now_s - t > timeout_s]
