"""ROS conventions for camera data, without importing ROS: CameraInfo fields and PointCloud2 layouts as numpy.

Names and layouts follow realsense-ros: librealsense's Brown-Conrady variants are published as ``plumb_bob``
(five coefficients k1, k2, p1, p2, k3, same order), ``kannala_brandt4`` as ``equidistant`` (four), ``none`` as
``plumb_bob`` with zeros. ``ftheta`` has no ROS model: its name and single coefficient are passed through.
"""

from __future__ import annotations

import numpy as np

from dexstack.camera.types import Intrinsics

ROS_DISTORTION_MODELS = {
    "brown_conrady": ("plumb_bob", 5),
    "inverse_brown_conrady": ("plumb_bob", 5),  # as realsense-ros does (D4xx color: all zero)
    "modified_brown_conrady": ("plumb_bob", 5),
    "none": ("plumb_bob", 5),
    "kannala_brandt4": ("equidistant", 4),
    "ftheta": ("ftheta", 1),
}

IDENTITY_R = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_MM_TO_M = np.float32(0.001)


def ros_distortion(intr: Intrinsics) -> tuple[str, list[float]]:
    """``(distortion_model, D)`` for sensor_msgs/CameraInfo from librealsense intrinsics."""
    if intr.model not in ROS_DISTORTION_MODELS:
        raise ValueError(f"unknown librealsense distortion model {intr.model!r}")
    name, n = ROS_DISTORTION_MODELS[intr.model]
    coeffs = [0.0] * n if intr.model == "none" else [float(c) for c in intr.coeffs[:n]]
    return name, coeffs + [0.0] * (n - len(coeffs))


def camera_info_fields(intr: Intrinsics) -> dict:
    """Every sensor_msgs/CameraInfo field but the header, for an unrectified stream with these intrinsics
    (R identity, P = [K | 0], no binning or ROI)."""
    model, d = ros_distortion(intr)
    fx, fy, cx, cy = float(intr.fx), float(intr.fy), float(intr.ppx), float(intr.ppy)
    return {
        "width": int(intr.width),
        "height": int(intr.height),
        "distortion_model": model,
        "d": d,
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "r": list(IDENTITY_R),
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    }


def point_cloud_dtype(with_rgb: bool) -> np.dtype:
    """PointCloud2 point layout: x, y, z float32 (metres), then ``rgb`` packed as PCL does (uint32
    0x00RRGGBB in a field declared FLOAT32)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    return np.dtype(fields + [("rgb", "<u4")] if with_rgb else fields)


def organized_point_cloud(depth_mm: np.ndarray, intr: Intrinsics, stride: int = 1,
                          color_rgb8: np.ndarray | None = None) -> np.ndarray:
    """Organized cloud (rows x cols structured array) of every ``stride``-th pixel in u and v.

    Point (r, c) is pixel (v, u) = (r * stride, c * stride), back-projected with the pinhole model of
    ``intr`` (lens distortion is ignored) in that camera's optical frame; pixels without depth are NaN.
    ``color_rgb8`` (same size as ``depth_mm``, i.e. aligned) adds the packed ``rgb`` field.
    """
    if depth_mm.shape != (intr.height, intr.width):
        raise ValueError(f"depth {depth_mm.shape} does not match intrinsics {intr.width}x{intr.height}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    z = depth_mm[::stride, ::stride].astype(np.float32) * _MM_TO_M
    u = np.arange(0, intr.width, stride, dtype=np.float32)
    v = np.arange(0, intr.height, stride, dtype=np.float32)
    z[z == 0] = np.nan
    cloud = np.empty(z.shape, point_cloud_dtype(color_rgb8 is not None))
    cloud["x"] = ((u - np.float32(intr.ppx)) / np.float32(intr.fx))[None, :] * z
    cloud["y"] = ((v - np.float32(intr.ppy)) / np.float32(intr.fy))[:, None] * z
    cloud["z"] = z
    if color_rgb8 is not None:
        if color_rgb8.shape[:2] != depth_mm.shape:
            raise ValueError(f"color {color_rgb8.shape[:2]} is not aligned to depth {depth_mm.shape}")
        rgb = color_rgb8[::stride, ::stride].astype(np.uint32)
        cloud["rgb"] = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return cloud
