"""librealsense frame processing shared by every source: depth filters, depth-to-color alignment and
copy-out into an :class:`~dexstack.camera.types.RGBDFrame`, plus SDK <-> dexstack type conversions.

Extrinsics convention: ``T_color_depth`` is a 4x4 homogeneous transform in metres that maps a point
expressed in the depth camera's optical frame into the color camera's optical frame
(``p_color = T_color_depth @ p_depth``). librealsense stores the same transform as ``rs.extrinsics``
of the depth profile "to" the color profile, with a column-major rotation.
"""

from __future__ import annotations

import logging

import numpy as np
import pyrealsense2 as rs

from dexstack.camera.config import CameraConfig
from dexstack.camera.types import RGBDFrame
from dexstack.camera_model import CameraModel

_LOG = logging.getLogger(__name__)

_NS_PER_MS = 1_000_000
_MM_PER_M = 1000.0
_DEPTH_MAX = np.iinfo(np.uint16).max

# Channel slices that turn a color format into RGB8 (playback files keep the format they were recorded in).
_RGB_CHANNELS = {
    rs.format.rgb8: slice(None),
    rs.format.bgr8: slice(None, None, -1),
    rs.format.rgba8: slice(0, 3),
    rs.format.bgra8: slice(2, None, -1),
}


# librealsense distortion -> (sensor_msgs/OpenCV name, coefficient count), as realsense-ros publishes them: the
# Brown-Conrady variants as ``plumb_bob`` (k1, k2, p1, p2, k3, same order; D4xx color streams carry zeros),
# ``kannala_brandt4`` as ``equidistant``, ``none`` as ``plumb_bob`` with zeros; ``ftheta`` has no ROS model and is
# passed through with its single coefficient.
RS_TO_CAMERA_MODEL = {
    "brown_conrady": ("plumb_bob", 5),
    "inverse_brown_conrady": ("plumb_bob", 5),
    "modified_brown_conrady": ("plumb_bob", 5),
    "none": ("plumb_bob", 5),
    "kannala_brandt4": ("equidistant", 4),
    "ftheta": ("ftheta", 1),
}
CAMERA_MODEL_TO_RS = {"plumb_bob": "brown_conrady", "equidistant": "kannala_brandt4", "ftheta": "ftheta"}


def intrinsics_from_rs(intr: rs.intrinsics) -> CameraModel:
    rs_name = intr.model.name
    name, n = RS_TO_CAMERA_MODEL.get(rs_name, (rs_name, len(intr.coeffs)))
    coeffs = [0.0] * n if rs_name == "none" else [float(c) for c in intr.coeffs[:n]]
    return CameraModel(width=intr.width, height=intr.height, fx=intr.fx, fy=intr.fy, cx=intr.ppx, cy=intr.ppy,
                       distortion_model=name, D=tuple(coeffs + [0.0] * (n - len(coeffs))))


def intrinsics_to_rs(model: CameraModel) -> rs.intrinsics:
    if model.distortion_model not in CAMERA_MODEL_TO_RS:
        raise ValueError(f"librealsense has no distortion model for '{model.distortion_model}'")
    out = rs.intrinsics()
    out.width, out.height = model.width, model.height
    out.fx, out.fy, out.ppx, out.ppy = model.fx, model.fy, model.cx, model.cy
    out.model = getattr(rs.distortion, CAMERA_MODEL_TO_RS[model.distortion_model])
    out.coeffs = (list(model.D) + [0.0] * 5)[:5]
    return out


def extrinsics_to_rs(T_color_depth: np.ndarray) -> rs.extrinsics:
    """``T_color_depth`` (4x4, metres) -> ``rs.extrinsics`` of the depth profile to the color profile."""
    T = np.asarray(T_color_depth, dtype=float)
    if T.shape != (4, 4):
        raise ValueError(f"T_color_depth must be 4x4, got {T.shape}")
    out = rs.extrinsics()
    out.rotation = T[:3, :3].flatten(order="F").tolist()
    out.translation = T[:3, 3].tolist()
    return out


def extrinsics_from_rs(extr: rs.extrinsics) -> np.ndarray:
    """``rs.extrinsics`` (depth profile to color profile) -> ``T_color_depth`` (4x4, metres)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(extr.rotation, dtype=float).reshape(3, 3, order="F")
    T[:3, 3] = extr.translation
    return T


class FrameProcessor:
    """Turns a depth + color ``rs.composite_frame`` into an owned :class:`RGBDFrame`.

    Depth goes through the enabled filters (decimation, spatial, temporal, hole filling, in that
    order, all on z16 depth) and then, when ``align_depth``, ``rs.align(rs.stream.color)`` reprojects
    it into the color camera. Depth is converted from the frame's own units to millimetres.

    Stamp and frame number are the color frame's. ``dropped_frames`` counts gaps in successive frame
    numbers (a frame number that does not increase is taken as a counter restart, not a drop).
    The temporal filter and the drop counter are stateful: use one processor per stream.
    """

    def __init__(
        self,
        *,
        align_depth: bool = True,
        decimation: bool = False,
        spatial: bool = False,
        temporal: bool = False,
        hole_filling: bool = False,
    ):
        enabled = (
            (decimation, rs.decimation_filter),
            (spatial, rs.spatial_filter),
            (temporal, rs.temporal_filter),
            (hole_filling, rs.hole_filling_filter),
        )
        self._filters: list[rs.filter] = [make() for on, make in enabled if on]
        self._align = rs.align(rs.stream.color) if align_depth else None
        self._last_color: tuple[int, int] | None = None  # (frame_number, stamp_ns) of the last emitted frame
        self._dropped_frames = 0
        self._unsynchronized = 0

    @classmethod
    def from_config(cls, config: CameraConfig) -> FrameProcessor:
        return cls(
            align_depth=config.align_depth,
            decimation=config.decimation_filter,
            spatial=config.spatial_filter,
            temporal=config.temporal_filter,
            hole_filling=config.hole_filling_filter,
        )

    @property
    def dropped_frames(self) -> int:
        """Color frames never delivered (gaps in the frame counter)."""
        return self._dropped_frames

    @property
    def unsynchronized_pairs(self) -> int:
        """Color/depth pairs discarded because their stamps were more than half a frame apart."""
        return self._unsynchronized

    def process(self, frameset: rs.composite_frame) -> RGBDFrame | None:
        """Return the RGB-D frame, or None when ``frameset`` lacks depth or color.

        Raises ValueError for a color format that cannot be converted to RGB8.
        """
        color = frameset.get_color_frame()
        raw_depth = frameset.get_depth_frame()
        if not (color and raw_depth):
            return None
        frame_number = color.get_frame_number()
        stamp_ns = round(color.get_timestamp() * _NS_PER_MS)
        # The syncer pairs the latest frames it has; under load (and where a playback wraps around) that can be a
        # depth image of another moment. Never publish such a pair: more than half a frame apart is dropped.
        fps = color.profile.fps() or 30
        skew_ns = abs(round(raw_depth.get_timestamp() * _NS_PER_MS) - stamp_ns)
        if skew_ns > 0.5e9 / fps:
            self._unsynchronized += 1
            _LOG.debug("dropping a color/depth pair %.1f ms apart", skew_ns / 1e6)
            return None
        if (frame_number, stamp_ns) == self._last_color:
            # The syncer can re-send a color frame with a new depth frame (seen where a looping playback
            # wraps around); emitting it again would publish one image twice.
            _LOG.debug("skipping frameset that repeats color frame %d", frame_number)
            return None

        for block in self._filters:  # on a frameset, each filter replaces only the depth frame
            frameset = block.process(frameset).as_frameset()
        if self._align is not None:  # reprojects depth; the color frame passes through unchanged
            frameset = self._align.process(frameset)
        depth = frameset.get_depth_frame()

        self._count_drops(frame_number)
        self._last_color = (frame_number, stamp_ns)
        units_m = depth.get_units()
        return RGBDFrame(
            color_rgb8=_color_to_rgb8(color),
            depth_mm=_depth_to_mm(np.asanyarray(depth.get_data()), units_m),
            stamp_ns=stamp_ns,
            frame_number=frame_number,
            color_intrinsics=intrinsics_from_rs(color.profile.as_video_stream_profile().get_intrinsics()),
            depth_intrinsics=intrinsics_from_rs(depth.profile.as_video_stream_profile().get_intrinsics()),
            depth_scale_m=float(units_m),
            depth_aligned=self._align is not None,
            stamp_domain=color.get_frame_timestamp_domain().name,
        )

    def _count_drops(self, frame_number: int) -> None:
        if self._last_color is None:
            return
        last = self._last_color[0]
        gap = frame_number - last - 1
        if gap > 0:
            self._dropped_frames += gap
            _LOG.debug("dropped %d frame(s) between frame %d and %d", gap, last, frame_number)
        elif gap < 0:
            _LOG.info("frame counter restarted (%d after %d)", frame_number, last)


def _color_to_rgb8(color: rs.video_frame) -> np.ndarray:
    fmt = color.profile.format()
    if fmt not in _RGB_CHANNELS:
        raise ValueError(f"color format {fmt.name} is not supported; use rgb8, bgr8, rgba8 or bgra8")
    pixels = np.asanyarray(color.get_data())
    return np.array(pixels[..., _RGB_CHANNELS[fmt]], order="C", copy=True)


def _depth_to_mm(raw: np.ndarray, units_m: float) -> np.ndarray:
    """z16 counts of ``units_m`` metres -> owned uint16 millimetres (rounded, saturated at 65535)."""
    mm_per_count = units_m * _MM_PER_M
    if abs(mm_per_count - 1.0) < 1e-6:
        return np.array(raw, dtype=np.uint16, copy=True)
    mm = np.rint(raw.astype(np.float32) * np.float32(mm_per_count))
    return np.minimum(mm, _DEPTH_MAX).astype(np.uint16)
