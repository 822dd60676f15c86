"""ROS conventions for camera data, without importing ROS: PointCloud2 layouts as numpy (realsense-ros layout).

CameraInfo fields come from :meth:`dexstack.camera_model.CameraModel.camera_info_fields`.
"""

from __future__ import annotations

import numpy as np

from dexstack.camera_model import CameraModel

_MM_TO_M = np.float32(0.001)


def point_cloud_dtype(with_rgb: bool) -> np.dtype:
    """PointCloud2 point layout: x, y, z float32 (metres), then ``rgb`` packed as PCL does (uint32
    0x00RRGGBB in a field declared FLOAT32)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    return np.dtype(fields + [("rgb", "<u4")] if with_rgb else fields)


def organized_point_cloud(depth_mm: np.ndarray, intr: CameraModel, stride: int = 1,
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
    cloud["x"] = ((u - np.float32(intr.cx)) / np.float32(intr.fx))[None, :] * z
    cloud["y"] = ((v - np.float32(intr.cy)) / np.float32(intr.fy))[:, None] * z
    cloud["z"] = z
    if color_rgb8 is not None:
        if color_rgb8.shape[:2] != depth_mm.shape:
            raise ValueError(f"color {color_rgb8.shape[:2]} is not aligned to depth {depth_mm.shape}")
        rgb = color_rgb8[::stride, ::stride].astype(np.uint32)
        cloud["rgb"] = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return cloud
