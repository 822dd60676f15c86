"""Forward kinematics and frame Jacobians of the merged robot description, computed by pinocchio."""

from __future__ import annotations

import numpy as np
import pinocchio as pin

from dexstack.robot.description import RobotDescription


class Kinematics:
    """Pinocchio model of a :class:`RobotDescription`.

    Joint vectors are in the description's order (``description.joints``: arm then hand), in radians.
    Poses are 4x4 homogeneous transforms ``T_base_frame`` in the robot base frame (the arm's base link).
    """

    def __init__(self, description: RobotDescription):
        self.description = description
        self.model = pin.buildModelFromXML(description.urdf_xml)
        self.data = self.model.createData()
        self._q_index = np.array([self.model.idx_qs[self.model.getJointId(n)] for n in description.joints])
        self._v_index = np.array([self.model.idx_vs[self.model.getJointId(n)] for n in description.joints])
        if self.model.nq != len(description.joints):
            raise ValueError(f"pinocchio model has nq={self.model.nq}, "
                             f"description has {len(description.joints)} joints")

    def frame_id(self, frame: str) -> int:
        if not self.model.existFrame(frame):
            raise KeyError(f"frame '{frame}' is not in the robot description")
        return self.model.getFrameId(frame)

    def _q(self, q_rad: np.ndarray) -> np.ndarray:
        q_rad = np.asarray(q_rad, dtype=float)
        if q_rad.shape != (len(self._q_index),):
            raise ValueError(f"expected {len(self._q_index)} joint positions, got shape {q_rad.shape}")
        q = np.zeros(self.model.nq)
        q[self._q_index] = q_rad
        return q

    def update(self, q_rad: np.ndarray) -> None:
        """Run forward kinematics once; then read several frames with :meth:`pose`."""
        pin.framesForwardKinematics(self.model, self.data, self._q(q_rad))

    def pose(self, frame: str) -> np.ndarray:
        """T_base_frame after :meth:`update`."""
        return self.data.oMf[self.frame_id(frame)].homogeneous.copy()

    def frame_pose(self, q_rad: np.ndarray, frame: str) -> np.ndarray:
        self.update(q_rad)
        return self.pose(frame)

    def frame_poses(self, q_rad: np.ndarray, frames: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
        self.update(q_rad)
        return {f: self.pose(f) for f in frames}

    def frame_jacobian(self, q_rad: np.ndarray, frame: str) -> np.ndarray:
        """6 x n Jacobian of ``frame`` (linear; angular), base-aligned axes at the frame origin, columns in joint
        order."""
        q = self._q(q_rad)
        J = pin.computeFrameJacobian(self.model, self.data, q, self.frame_id(frame), pin.LOCAL_WORLD_ALIGNED)
        return J[:, self._v_index]
