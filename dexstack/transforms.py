"""Rigid transforms: 4x4 homogeneous matrices ``T_a_b`` (pose of frame b in frame a), metres, quaternions xyzw."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pinocchio as pin


def make_transform(xyz: Sequence[float], rotation: np.ndarray | None = None) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = xyz
    if rotation is not None:
        T[:3, :3] = rotation
    return T


def rpy_to_matrix(rpy: Sequence[float]) -> np.ndarray:
    """URDF convention: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    return pin.rpy.rpyToMatrix(*map(float, rpy))


def quat_xyzw_to_matrix(quat_xyzw: Sequence[float]) -> np.ndarray:
    x, y, z, w = map(float, quat_xyzw)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion {quat_xyzw} cannot be normalised")
    return pin.Quaternion(w / norm, x / norm, y / norm, z / norm).toRotationMatrix()


def matrix_to_quat_xyzw(rotation: np.ndarray) -> np.ndarray:
    q = pin.Quaternion(np.asarray(rotation, dtype=float))
    q.normalize()
    return np.array([q.x, q.y, q.z, q.w])


def pose_to_transform(xyz: Sequence[float], quat_xyzw: Sequence[float]) -> np.ndarray:
    return make_transform(xyz, quat_xyzw_to_matrix(quat_xyzw))


def transform_to_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xyz, quat_xyzw) of a 4x4 transform."""
    return T[:3, 3].copy(), matrix_to_quat_xyzw(T[:3, :3])


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """T_world_optical for a camera at ``eye`` looking at ``target``: optical frame z forward, x right, y down."""
    eye, target, up = (np.asarray(v, dtype=float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(eye, np.column_stack((x, y, z)))
