"""Rigid transforms and rotations: 4x4 homogeneous matrices ``T_a_b`` (pose of frame b in frame a), metres,
rotation matrices, rotation vectors (axis * angle, rad) and quaternions ordered xyzw (ROS). The one home of these
helpers: other modules import them from here."""

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


def invert_transform(T: np.ndarray) -> np.ndarray:
    """T_b_a from T_a_b (R^T, -R^T t)."""
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def transform_points(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply the 4x4 ``T_a_b`` to (N, 3) points in frame b -> points in frame a."""
    return np.asarray(p, dtype=float) @ T[:3, :3].T + T[:3, 3]


def skew(w: np.ndarray) -> np.ndarray:
    """[w]x: skew(w) @ v = w x v."""
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``w`` (Rodrigues: R = I + sin(t) K + (1 - cos(t)) K^2, K = [w/t]x)."""
    w = np.asarray(w, dtype=float)
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3) + skew(w)
    k = skew(w / theta)
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def rotation_angle_rad(R: np.ndarray) -> float:
    """Angle of a rotation matrix, in [0, pi]: cos(t) = (trace(R) - 1) / 2."""
    return float(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of xyzw quaternions (the rotation b, then a); broadcasts over leading axes."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=float), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=float), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Conjugate of xyzw quaternions (the inverse rotation for unit ones)."""
    q = np.asarray(q, dtype=float)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def quat_angle_rad(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle (rad, in [0, pi]) between two xyzw quaternions: 2 acos(|<a, b>| / (|a| |b|))."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(2.0 * np.arccos(min(1.0, abs(float(np.dot(a, b))) / (np.linalg.norm(a) * np.linalg.norm(b)))))
