"""One cell behind the deployed command path (:class:`~.cpu_backend.MujocoBatch` with one env) with the
``reset / command / advance / observe`` interface of :class:`~.physics.CellBackend`, so that
:func:`~.env.evaluate` (the policy runtime in-process) runs through the same gate and driver semantics as training.
"""

from __future__ import annotations

import numpy as np

from dexstack.policies.tracking.cpu_backend import DEFAULT_TIMESTEP_S, CommandPath, MujocoBatch


class GatedCell:
    def __init__(self, period_s: float, gate: str = "limits", timestep_s: float = DEFAULT_TIMESTEP_S,
                 cell: str = "tabletop"):
        self.batch = MujocoBatch(1, period_s, CommandPath.ideal(gate, timestep_s), cell)
        self.description = self.batch.description
        self.period_s = period_s
        self.n_arm = len(self.description.arm_joints)
        self.target = np.zeros(len(self.description.joints))

    def reset(self, q: np.ndarray, object_pose: np.ndarray, friction_scale: float = 1.0,
              mass_scale: float = 1.0) -> None:
        self.batch.reset(np.array([0]), np.asarray(q, float)[None], np.asarray(object_pose, float)[None],
                         np.array([friction_scale]), np.array([mass_scale]))
        self.target = np.asarray(q, dtype=float).copy()

    def command(self, arm: np.ndarray | None, hand: np.ndarray | None, horizon_s: float) -> None:
        if arm is not None:
            self.target[: self.n_arm] = arm
        if hand is not None:
            self.target[self.n_arm:] = hand

    def advance(self, duration_s: float) -> None:
        if abs(duration_s - self.period_s) > 1e-9:
            raise ValueError(f"GatedCell advances by its control period {self.period_s} s, not {duration_s}")
        self.batch.step(self.target[None])

    def observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.batch.out
        return out["q"][0].copy(), out["dq"][0].copy(), out["object_pose"][0].copy()
