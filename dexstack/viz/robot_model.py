"""The robot's geometry for the viewer: meshes and primitives per link from the MuJoCo model of the description.

MuJoCo already resolves the description's meshes (STL/OBJ) and primitives; we bake each geom's placement into its
link (body) frame once, so a new joint state only moves the links: ``T_base_link`` from ``mj_kinematics``.
Where a link has visual geoms (URDF ``<visual>``, MuJoCo group 1) only those are drawn, else its collision geoms.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from dexstack.robot.description import RobotDescription


@dataclass(frozen=True)
class LinkShape:
    """One drawable of a link, vertices already in the link frame (metres)."""

    kind: str  # "mesh" | "box" | "sphere" | "cylinder" | "capsule"
    rgba: tuple[float, float, float, float]
    vertices: np.ndarray | None = None  # mesh: (V, 3)
    triangles: np.ndarray | None = None  # mesh: (F, 3) uint32
    size: tuple[float, ...] = ()  # box: half sizes; sphere: (r,); cylinder/capsule: (r, half length)
    T_link_shape: np.ndarray | None = None  # primitives: their pose in the link frame


def _pose(pos: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat_wxyz)
    T[:3, :3] = mat.reshape(3, 3)
    T[:3, 3] = pos
    return T


class RobotModel:
    """Link shapes and forward kinematics of a robot description (profile joint names map to MuJoCo joints)."""

    def __init__(self, description: RobotDescription):
        self.description = description
        self.model = mujoco.MjSpec.from_string(description.mujoco_urdf_xml()).compile()
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qpos_adr = {n: int(m.joint(n).qposadr[0]) for n in description.joints}
        visual_bodies = {int(m.geom_bodyid[g]) for g in range(m.ngeom) if m.geom_group[g] == 1}
        self.shapes: dict[str, list[LinkShape]] = {}
        for g in range(m.ngeom):
            body = int(m.geom_bodyid[g])
            if body == 0 or (body in visual_bodies and m.geom_group[g] != 1):
                continue
            shape = self._shape(g)
            if shape is not None:
                self.shapes.setdefault(m.body(body).name, []).append(shape)
        self._body_ids = {name: m.body(name).id for name in self.shapes}

    def _shape(self, g: int) -> LinkShape | None:
        m = self.model
        T = _pose(m.geom_pos[g], m.geom_quat[g])
        rgba = tuple(float(c) for c in m.geom_rgba[g])
        kind = int(m.geom_type[g])
        size = m.geom_size[g]
        if kind == mujoco.mjtGeom.mjGEOM_MESH:
            mesh = int(m.geom_dataid[g])
            v0, nv = int(m.mesh_vertadr[mesh]), int(m.mesh_vertnum[mesh])
            f0, nf = int(m.mesh_faceadr[mesh]), int(m.mesh_facenum[mesh])
            vertices = m.mesh_vert[v0:v0 + nv] @ T[:3, :3].T + T[:3, 3]
            return LinkShape("mesh", rgba, vertices=vertices.astype(np.float32),
                             triangles=m.mesh_face[f0:f0 + nf].astype(np.uint32))
        if kind == mujoco.mjtGeom.mjGEOM_BOX:
            return LinkShape("box", rgba, size=tuple(size[:3]), T_link_shape=T)
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            return LinkShape("sphere", rgba, size=(float(size[0]),), T_link_shape=T)
        if kind in (mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_CAPSULE):
            name = "cylinder" if kind == mujoco.mjtGeom.mjGEOM_CYLINDER else "capsule"
            return LinkShape(name, rgba, size=(float(size[0]), float(size[1])), T_link_shape=T)
        return None  # planes, height fields: not part of a robot

    def link_poses(self, names: list[str] | tuple[str, ...], positions_rad: np.ndarray) -> dict[str, np.ndarray]:
        """``T_base_link`` of every drawn link for the named joint positions (joints not named keep their last
        value, so arm and hand may come in separate messages)."""
        for name, q in zip(names, positions_rad):
            adr = self._qpos_adr.get(name)
            if adr is not None and np.isfinite(q):
                self.data.qpos[adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        out = {}
        for name, body in self._body_ids.items():
            T = np.eye(4)
            T[:3, :3] = self.data.xmat[body].reshape(3, 3)
            T[:3, 3] = self.data.xpos[body]
            out[name] = T
        return out
