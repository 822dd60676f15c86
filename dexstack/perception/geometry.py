"""Pinhole camera geometry, organised point clouds and small rigid-motion helpers for perception. No ROS.

Frames: the camera is the REP-103 optical frame (z forward, x right, y down); image pixels are (u right, v down)
with the pixel centre at integer coordinates (OpenCV convention). Units: metres, radians, pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexstack.calibration import Intrinsics


@dataclass(frozen=True)
class PinholeCamera:
    """Undistorted pinhole intrinsics of the color stream (aligned depth shares them)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_intrinsics(cls, intrinsics: Intrinsics) -> PinholeCamera:
        return cls(intrinsics.width, intrinsics.height, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)

    @classmethod
    def from_k(cls, width: int, height: int, k: np.ndarray) -> PinholeCamera:
        """From a row-major 3x3 (or 9-vector) K, as in sensor_msgs/CameraInfo."""
        k = np.asarray(k, dtype=float).reshape(3, 3)
        return cls(int(width), int(height), float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def backproject(self, uv_px: np.ndarray, z_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixels and (N,) depths along the optical axis -> (N, 3) points in the camera frame."""
        uv_px = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        z_m = np.asarray(z_m, dtype=float).reshape(-1)
        x = (uv_px[:, 0] - self.cx) / self.fx * z_m
        y = (uv_px[:, 1] - self.cy) / self.fy * z_m
        return np.column_stack((x, y, z_m))

    def project(self, p_camera_m: np.ndarray) -> np.ndarray:
        """(N, 3) points in the camera frame -> (N, 2) pixels (points behind the camera give inf/nan)."""
        p = np.asarray(p_camera_m, dtype=float).reshape(-1, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.column_stack((self.fx * p[:, 0] / p[:, 2] + self.cx, self.fy * p[:, 1] / p[:, 2] + self.cy))


def depth_to_meters(depth: np.ndarray, depth_scale_m: float = 0.001) -> np.ndarray:
    """16UC1 depth (0 = no return) -> float32 metres with NaN for holes."""
    depth = np.asarray(depth)
    out = depth.astype(np.float32) * np.float32(depth_scale_m)
    out[depth == 0] = np.nan
    return out


def organized_points(depth_m: np.ndarray, camera: PinholeCamera, u0: int = 0, v0: int = 0) -> np.ndarray:
    """(H, W) depth in metres (NaN = hole), whose top-left pixel is (u0, v0) of the full image -> (H, W, 3) points
    in the camera frame (NaN where depth is missing)."""
    h, w = depth_m.shape
    u = np.arange(u0, u0 + w, dtype=np.float32)
    v = np.arange(v0, v0 + h, dtype=np.float32)
    x = (u[None, :] - camera.cx) / camera.fx * depth_m
    y = (v[:, None] - camera.cy) / camera.fy * depth_m
    return np.stack((x, y, depth_m), axis=-1)


def organized_normals(points: np.ndarray, max_jump_m: float = 0.01) -> np.ndarray:
    """Unit normals of an organised (H, W, 3) cloud from central differences, oriented toward the camera.

    NaN where a neighbour is missing or a depth jump larger than ``max_jump_m`` (an occlusion edge) is crossed.
    """
    p = points
    nan = np.full_like(p[:, :1], np.nan)
    right = np.concatenate((p[:, 1:], nan), axis=1)
    left = np.concatenate((nan, p[:, :-1]), axis=1)
    nan_row = np.full_like(p[:1], np.nan)
    down = np.concatenate((p[1:], nan_row), axis=0)
    up = np.concatenate((nan_row, p[:-1]), axis=0)
    du = right - left
    dv = down - up
    n = np.cross(du, dv)
    with np.errstate(invalid="ignore", divide="ignore"):
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        jump = np.maximum(np.abs(du[..., 2]), np.abs(dv[..., 2])) > 2.0 * max_jump_m
    n[jump] = np.nan
    flip = np.einsum("...i,...i->...", n, p) > 0  # face the camera (the camera is at the origin)
    n[flip] *= -1.0
    return n


def skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``w`` (axis * angle, rad)."""
    w = np.asarray(w, dtype=float)
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3) + skew(w)
    k = skew(w / theta)
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def rotation_angle_rad(R: np.ndarray) -> float:
    """Angle of a rotation matrix, in [0, pi]."""
    return float(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))


def invert_transform(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def transform_points(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply the 4x4 ``T_a_b`` to (N, 3) points in frame b -> points in frame a."""
    return np.asarray(p, dtype=float) @ T[:3, :3].T + T[:3, 3]


def pose_error(T_est: np.ndarray, T_true: np.ndarray,
               symmetries: np.ndarray | None = None) -> tuple[float, float]:
    """(translation error in mm, rotation error in deg) between two poses of an object in the same frame.

    ``symmetries``: (K, 3, 3) rotations of the object frame that leave the object unchanged (e.g. the 24 of a
    cube); the rotation error is the smallest over them. Without it the object is treated as asymmetric.
    """
    err_mm = 1000.0 * float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))
    syms = np.eye(3)[None] if symmetries is None else symmetries
    err_rad = min(rotation_angle_rad(T_true[:3, :3].T @ T_est[:3, :3] @ S) for S in syms)
    return err_mm, float(np.degrees(err_rad))


def rotate_covariance(cov6: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Express a 6x6 pose covariance (x, y, z, rx, ry, rz; rotations about fixed axes) in a frame rotated by R."""
    B = np.zeros((6, 6))
    B[:3, :3] = R
    B[3:, 3:] = R
    return B @ cov6 @ B.T


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares plane through (N, 3) points: (unit normal, offset d with n.p = d, RMS residual in metres)."""
    centroid = points.mean(axis=0)
    _, s, vt = np.linalg.svd(points - centroid, full_matrices=False)
    n = vt[-1]
    rms = float(s[-1] / np.sqrt(len(points)))
    return n, float(n @ centroid), rms
