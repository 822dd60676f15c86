"""The sim cell's physics for training and evaluation: the MuJoCo model that :class:`dexstack.sim.SimCell` builds,
stepped directly (no lock, no per-step Python trajectory sampling) with the same command semantics.

Per control step, as the ``policy`` node commands the cell: the arm gets a one-point trajectory reaching the target
after one control period (joint_trajectory_controller: a linear ramp from the current setpoint, then hold); the hand
gets position targets at once. Domain randomisation changes the object's friction and mass per episode.

This is the only MuJoCo-specific piece of the tracking environment (:mod:`dexstack.policies.tracking.env` talks to
it through :class:`CellBackend`'s four methods), so another simulator can stand in.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from dexstack.sim import SimCell  # noqa: E402
from dexstack.sim.scene import OBJECT_JOINT  # noqa: E402


class CellBackend:
    """MuJoCo cell: ``reset``, ``command``, ``advance``, ``observe``."""

    def __init__(self, cell: str = "tabletop", timestep_s: float | None = None):
        sim = SimCell(cell, with_camera=False)
        self.description = sim.description
        self.model = sim.model
        if timestep_s is not None:
            self.model.opt.timestep = timestep_s
        self.data = mujoco.MjData(self.model)
        d = self.description
        m = self.model
        self.qpos_adr = np.array([m.joint(n).qposadr[0] for n in d.joints])
        self.dof_adr = np.array([m.joint(n).dofadr[0] for n in d.joints])
        self.act_ids = np.array([m.actuator(n).id for n in d.joints])
        self.n_arm = len(d.arm_joints)
        self.obj_qpos = m.joint(OBJECT_JOINT).qposadr[0]
        self.obj_body = m.body(sim.cell.object.name).id
        self.obj_geom = m.geom(f"{sim.cell.object.name}_geom").id
        self.nominal_friction = m.geom_friction[self.obj_geom].copy()
        self.nominal_mass = float(m.body_mass[self.obj_body])
        self.nominal_inertia = m.body_inertia[self.obj_body].copy()
        self.setpoint = np.zeros(len(d.joints))
        self._ramp_from = np.zeros(self.n_arm)
        self._ramp_to = np.zeros(self.n_arm)
        self._ramp_t0 = 0.0
        self._ramp_T = 1e-9

    @property
    def timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, q: np.ndarray, object_pose: np.ndarray, friction_scale: float = 1.0,
              mass_scale: float = 1.0) -> None:
        """Robot at ``q`` (at rest, holding), object at ``object_pose`` (xyz + quat xyzw), randomised contact."""
        m, data = self.model, self.data
        m.geom_friction[self.obj_geom] = self.nominal_friction * np.array([friction_scale, 1.0, 1.0])
        m.body_mass[self.obj_body] = self.nominal_mass * mass_scale
        m.body_inertia[self.obj_body] = self.nominal_inertia * mass_scale
        mujoco.mj_resetData(m, data)
        data.qpos[self.qpos_adr] = q
        x, y, z, qx, qy, qz, qw = object_pose
        data.qpos[self.obj_qpos: self.obj_qpos + 7] = (x, y, z, qw, qx, qy, qz)
        self.setpoint = np.array(q, dtype=float)
        self._ramp_from = self._ramp_to = self.setpoint[: self.n_arm].copy()
        data.ctrl[self.act_ids] = q
        mujoco.mj_forward(m, data)

    def command(self, arm: np.ndarray | None, hand: np.ndarray | None, horizon_s: float) -> None:
        t = float(self.data.time)
        if arm is not None:
            self._ramp_from = self._arm_setpoint(t)
            self._ramp_to = np.asarray(arm, dtype=float)
            self._ramp_t0, self._ramp_T = t, max(horizon_s, 1e-9)
        if hand is not None:
            self.setpoint[self.n_arm:] = hand

    def _arm_setpoint(self, t: float) -> np.ndarray:
        s = min(1.0, max(0.0, (t - self._ramp_t0) / self._ramp_T))
        return self._ramp_from + s * (self._ramp_to - self._ramp_from)

    def advance(self, duration_s: float) -> None:
        m, data = self.model, self.data
        n = max(1, int(round(duration_s / m.opt.timestep)))
        ctrl_arm = self.act_ids[: self.n_arm]
        ctrl_hand = self.act_ids[self.n_arm:]
        data.ctrl[ctrl_hand] = self.setpoint[self.n_arm:]
        for _ in range(n):
            data.ctrl[ctrl_arm] = self._arm_setpoint(float(data.time))
            mujoco.mj_step(m, data)
        self.setpoint[: self.n_arm] = self._arm_setpoint(float(data.time))

    def observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q, dq, object pose xyz + quat xyzw)."""
        data = self.data
        x, y, z, qw, qx, qy, qz = data.qpos[self.obj_qpos: self.obj_qpos + 7]
        return (data.qpos[self.qpos_adr].copy(), data.qvel[self.dof_adr].copy(),
                np.array([x, y, z, qx, qy, qz, qw]))
