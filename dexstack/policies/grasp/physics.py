"""Physics of the grasp task: the tracking task's CPU backend (:class:`~dexstack.policies.tracking.cpu_backend.
MujocoBatch`: the deployed command path, the gate, latencies, one ``mujoco.rollout`` per period) with the outputs a
grasp needs, and several objects at once.

Extra outputs per env after each period (true state, from one ``mj_forward`` of the period's last state):

- ``palm`` (N, 7): the palm link's pose in the base frame (xyz + quat xyzw);
- ``links`` (N, L, 3): the grasp target's links (``link_names``) in the base frame;
- ``force`` (N, L): the normal contact force (N) between each link and the object: the teacher's privileged
  per-link tactile signal (FunGrasp), and the reward's contact terms.

:class:`MultiObjectBatch` holds one :class:`GraspBatch` per object (a MuJoCo model has one object) and routes
environments to them: env ``i`` always has object ``env_object[i]``.
"""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np

from dexstack.policies.tracking.cpu_backend import CommandPath, MujocoBatch
from dexstack.sim.config import CellConfig, load_cell_config, with_object
from dexstack.transforms import matrix_to_quat_xyzw

GRASP_CELL = "tabletop_grasp"
EXTRA_OUTPUTS = ("palm", "links", "force")


def grasp_cell(object_name: str, cell: str = GRASP_CELL) -> CellConfig:
    """The grasp cell with ``object_name`` on the table and no rendered human hand (training needs no camera)."""
    config = with_object(load_cell_config(cell), object_name)
    return replace(config, human_hand=replace(config.human_hand, enabled=False))


class GraspBatch(MujocoBatch):
    """N cells of one object; :class:`MujocoBatch` plus the ``palm``, ``links`` and ``force`` outputs."""

    def __init__(self, n_envs: int, period_s: float, object_name: str, link_names: tuple[str, ...],
                 path: CommandPath | None = None, seed: int = 0, cell: str = GRASP_CELL):
        super().__init__(n_envs, period_s, path, grasp_cell(object_name, cell), seed)
        m = self.models[0]
        self.object_name = object_name
        self.link_names = tuple(link_names)
        self.palm_body = m.body(self.description.profile.hand.palm_link).id
        self.link_bodies = np.array([m.body(name).id for name in self.link_names])
        self.body_to_link = {int(b): k for k, b in enumerate(self.link_bodies)}
        self.fwd = mujoco.MjData(m)
        L = len(self.link_names)
        self.out.update(palm=np.zeros((n_envs, 7)), links=np.zeros((n_envs, L, 3)), force=np.zeros((n_envs, L)))
        self._wrench = np.zeros(6)

    def reset(self, ids, q, object_pose, friction_scale, mass_scale) -> None:
        super().reset(ids, q, object_pose, friction_scale, mass_scale)
        self._extras(np.asarray(ids, dtype=int))

    def step_physics(self) -> dict[str, np.ndarray]:
        out = super().step_physics()
        self._extras(np.arange(self.n_envs))
        return out

    def _extras(self, ids: np.ndarray) -> None:
        d, out = self.fwd, self.out
        for i in ids:
            m = self.models[i]
            mujoco.mj_setState(m, d, self.state[i], self.spec)
            mujoco.mj_forward(m, d)
            out["palm"][i, :3] = d.xpos[self.palm_body]
            out["palm"][i, 3:] = matrix_to_quat_xyzw(d.xmat[self.palm_body].reshape(3, 3))
            out["links"][i] = d.xpos[self.link_bodies]
            force = out["force"][i]
            force[:] = 0.0
            for c in range(d.ncon):
                con = d.contact[c]
                b1, b2 = int(m.geom_bodyid[con.geom1]), int(m.geom_bodyid[con.geom2])
                if self.obj_body not in (b1, b2):
                    continue
                k = self.body_to_link.get(b2 if b1 == self.obj_body else b1)
                if k is not None:
                    mujoco.mj_contactForce(m, d, c, self._wrench)
                    force[k] += abs(self._wrench[0])


class MultiObjectBatch:
    """Envs ``0..N-1`` over several objects (one :class:`GraspBatch` each), the :class:`MujocoBatch` interface."""

    def __init__(self, env_object: list[str], period_s: float, link_names: tuple[str, ...],
                 path: CommandPath | None = None, seed: int = 0, cell: str = GRASP_CELL):
        self.env_object = list(env_object)
        self.objects = list(dict.fromkeys(self.env_object))
        self.n_envs = len(self.env_object)
        self.groups = []  # (batch, global env ids)
        for k, name in enumerate(self.objects):
            ids = np.array([i for i, o in enumerate(self.env_object) if o == name])
            self.groups.append((GraspBatch(len(ids), period_s, name, link_names, path, seed * 100 + k, cell), ids))
        first = self.groups[0][0]
        self.description = first.description
        self.out = {key: np.zeros((self.n_envs, *value.shape[1:])) for key, value in first.out.items()}
        self._local = np.zeros(self.n_envs, dtype=int)
        self._group = np.zeros(self.n_envs, dtype=int)
        for g, (_, ids) in enumerate(self.groups):
            self._group[ids] = g
            self._local[ids] = np.arange(len(ids))

    @property
    def unstable_count(self) -> int:
        return sum(b.unstable_count for b, _ in self.groups)

    def reset(self, ids, q, object_pose, friction_scale, mass_scale) -> None:
        ids = np.asarray(ids, dtype=int)
        for g, (batch, _ids) in enumerate(self.groups):
            sel = np.flatnonzero(self._group[ids] == g)
            if sel.size == 0:
                continue
            batch.reset(self._local[ids[sel]], q[sel], object_pose[sel], friction_scale[sel], mass_scale[sel])
            for key in self.out:
                self.out[key][ids[sel]] = batch.out[key][self._local[ids[sel]]]

    def step(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        for batch, gids in self.groups:
            out = batch.step(targets[gids])
            for key in self.out:
                self.out[key][gids] = out[key]
        return self.out
