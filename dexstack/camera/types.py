"""Value types shared by every RGB-D source: one registered RGB-D frame (intrinsics are
:class:`~dexstack.camera_model.CameraModel`).

Conventions: pixel coordinates (u right, v down) in the optical frame of the named camera; depth in
millimetres as ``uint16`` with 0 meaning "no data"; stamps in integer nanoseconds of the clock named by
``stamp_domain`` (the frame's own capture stamp, never the time it was processed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dexstack.camera_model import CameraModel


@dataclass
class RGBDFrame:
    """One color image with its depth image, both owned copies (never views into SDK buffers).

    When ``depth_aligned`` is true, ``depth_mm`` is registered to the color camera: same size as
    ``color_rgb8``, pixel (v, u) of both images sees the same ray, and ``depth_intrinsics`` equals
    ``color_intrinsics``. Otherwise ``depth_mm`` is in the depth camera's own pixel grid (possibly
    decimated) described by ``depth_intrinsics``.
    """

    color_rgb8: np.ndarray  # (H, W, 3) uint8, RGB order
    depth_mm: np.ndarray  # (h, w) uint16, millimetres along the optical axis, 0 = no data
    stamp_ns: int  # capture stamp of the color frame (device/file clock, see stamp_domain), ns
    frame_number: int  # color frame counter from the device/file
    color_intrinsics: CameraModel
    depth_intrinsics: CameraModel
    depth_scale_m: float  # the source's native depth unit (metres per raw z16 count), before the mm conversion
    depth_aligned: bool
    stamp_domain: str  # librealsense timestamp domain: "hardware_clock", "system_time" or "global_time"

    def __post_init__(self) -> None:
        color, depth = self.color_rgb8, self.depth_mm
        color_shape = (self.color_intrinsics.height, self.color_intrinsics.width, 3)
        depth_shape = (self.depth_intrinsics.height, self.depth_intrinsics.width)
        if color.dtype != np.uint8 or color.shape != color_shape:
            raise ValueError(f"color_rgb8 must be uint8 {color_shape}, got {color.dtype} {color.shape}")
        if depth.dtype != np.uint16 or depth.shape != depth_shape:
            raise ValueError(f"depth_mm must be uint16 {depth_shape}, got {depth.dtype} {depth.shape}")


class RGBDSource(Protocol):
    """What a camera node needs from any source of RGB-D frames."""

    def start(self) -> None: ...

    def read(self, timeout_s: float) -> RGBDFrame | None: ...

    def stop(self) -> None: ...

    @property
    def dropped_frames(self) -> int: ...
