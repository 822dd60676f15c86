"""Organised point clouds and small rigid-motion helpers for perception. No ROS.

Frames: the camera is the REP-103 optical frame (z forward, x right, y down); image pixels are (u right, v down)
with the pixel centre at integer coordinates (OpenCV convention). Units: metres, radians, pixels.
"""

from __future__ import annotations

import numpy as np

from dexstack.camera_model import CameraModel
from dexstack.transforms import invert_transform as invert_transform  # re-exported: rotation helpers live there
from dexstack.transforms import rotation_angle_rad as rotation_angle_rad
from dexstack.transforms import skew as skew
from dexstack.transforms import so3_exp as so3_exp
from dexstack.transforms import transform_points as transform_points


def depth_to_meters(depth: np.ndarray, depth_scale_m: float = 0.001) -> np.ndarray:
    """16UC1 depth (0 = no return) -> float32 metres with NaN for holes."""
    depth = np.asarray(depth)
    out = depth.astype(np.float32) * np.float32(depth_scale_m)
    out[depth == 0] = np.nan
    return out


def organized_points(depth_m: np.ndarray, camera: CameraModel, u0: int = 0, v0: int = 0) -> np.ndarray:
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
