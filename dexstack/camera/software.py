"""An RGB-D camera fed by the caller, built on librealsense's own ``rs.software_device``.

Frames pushed here go through the same SDK path as a real camera: ``rs.syncer`` pairs depth with
color, and the shared :class:`~dexstack.camera.processing.FrameProcessor` filters, aligns and copies
them out. With ``config.record_path`` the device is wrapped in ``rs.recorder`` and the pushed frames
land in a ``.db3`` that :class:`~dexstack.camera.realsense.RealSenseSource` can play back.

SDK behaviour worth knowing:

* The syncer learns which streams exist from the frames it sees, so the first pushed pair comes out
  as two single-stream sets and yields no RGBDFrame; frames pair up from the second push on.
* librealsense derives a software frame's "actual fps" metadata as frame_number / timestamp, which
  is wrong unless both start at zero and makes the syncer stop pairing; this class pins that metadata
  to the configured fps.
* Pixels are copied by ``on_video_frame``, so the caller may reuse its arrays after ``push``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyrealsense2 as rs

from dexstack.camera.config import CameraConfig, parse_profile, validate_config
from dexstack.camera.errors import CameraError
from dexstack.camera.processing import FrameProcessor, extrinsics_to_rs, intrinsics_to_rs
from dexstack.camera.types import RGBDFrame
from dexstack.camera_model import CameraModel

_LOG = logging.getLogger(__name__)

_NS_PER_MS = 1e6
_SYNCER_QUEUE_SIZE = 4  # framesets kept when pushes outpace reads; older ones are dropped (and counted)
_DEPTH_UID, _COLOR_UID = 1, 2


class SoftwareCamera:
    """Software RGB-D device with depth (z16) and color (rgb8) sensors.

    ``T_color_depth`` (4x4, metres, ``p_color = T_color_depth @ p_depth``) defaults to identity.
    Pushed depth is in z16 counts of ``depth_units_m`` metres (the default 0.001 makes them mm).
    The sizes of ``color_intrinsics``/``depth_intrinsics`` must match ``config.color_profile`` /
    ``config.depth_profile``, whose fps the syncer uses to pair frames.

    Frames carry the ``hardware_clock`` timestamp domain. Stamps pass through librealsense as float
    milliseconds: exact to the ns up to ~4e15 ns (46 days), within ~0.2 us for Unix-epoch stamps.
    Not thread-safe: push, read, start and stop from one thread.
    """

    def __init__(
        self,
        config: CameraConfig,
        color_intrinsics: CameraModel,
        depth_intrinsics: CameraModel,
        T_color_depth: np.ndarray | None = None,
        depth_units_m: float = 0.001,
        serial: str = "dexstack-sw-0",
    ):
        errors = validate_config(config)
        if config.source != "software":
            errors.append(f"SoftwareCamera needs source 'software', got {config.source!r}")
        for name, profile, intr in (
            ("color", config.color_profile, color_intrinsics),
            ("depth", config.depth_profile, depth_intrinsics),
        ):
            if not errors and parse_profile(profile)[:2] != (intr.width, intr.height):
                errors.append(f"{name}_profile {profile} does not match {name} intrinsics {intr.width}x{intr.height}")
        if errors:
            raise CameraError("invalid software camera config: " + "; ".join(errors))

        self.config = config
        self.color_intrinsics = color_intrinsics
        self.depth_intrinsics = depth_intrinsics
        self.depth_units_m = depth_units_m
        self._fps = {"depth": parse_profile(config.depth_profile)[2], "color": parse_profile(config.color_profile)[2]}

        self._device = rs.software_device()
        self._device.register_info(rs.camera_info.name, "dexstack SoftwareCamera")
        self._device.register_info(rs.camera_info.serial_number, serial)
        self._depth_sensor = self._device.add_sensor("Stereo Module")
        self._depth_sensor.add_read_only_option(rs.option.depth_units, depth_units_m)
        self._color_sensor = self._device.add_sensor("RGB Camera")
        self._depth_profile = self._add_stream(
            self._depth_sensor, rs.stream.depth, rs.format.z16, 2, depth_intrinsics, self._fps["depth"], _DEPTH_UID
        )
        self._color_profile = self._add_stream(
            self._color_sensor, rs.stream.color, rs.format.rgb8, 3, color_intrinsics, self._fps["color"], _COLOR_UID
        )
        T = np.eye(4) if T_color_depth is None else T_color_depth
        self._depth_profile.register_extrinsics_to(self._color_profile, extrinsics_to_rs(T))

        self._processor = FrameProcessor.from_config(config)
        self._syncer: rs.syncer | None = None
        self._streaming_sensors: list[rs.sensor] = []
        self._recorder: rs.recorder | None = None

    @staticmethod
    def _add_stream(
        sensor: rs.software_sensor, kind: rs.stream, fmt: rs.format, bpp: int, intr: CameraModel, fps: int, uid: int
    ) -> rs.video_stream_profile:
        stream = rs.video_stream()
        stream.type, stream.fmt, stream.bpp = kind, fmt, bpp
        stream.width, stream.height, stream.fps = intr.width, intr.height, fps
        stream.intrinsics = intrinsics_to_rs(intr)
        stream.index, stream.uid = 0, uid
        return sensor.add_video_stream(stream).as_video_stream_profile()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open both sensors into a fresh syncer (through ``rs.recorder`` when recording)."""
        if self._syncer is not None:
            return
        sensors: list[rs.sensor] = [self._depth_sensor, self._color_sensor]
        if self.config.record_path:
            try:
                self._recorder = rs.recorder(self.config.record_path, self._device)
            except RuntimeError as exc:
                raise CameraError(f"cannot record to {self.config.record_path}: {exc}") from exc
            sensors = self._recorder.query_sensors()  # same order as added: depth, color
        # actual_fps metadata is in milli-fps; see the module notes for why it is pinned.
        self._depth_sensor.set_metadata(rs.frame_metadata_value.actual_fps, self._fps["depth"] * 1000)
        self._color_sensor.set_metadata(rs.frame_metadata_value.actual_fps, self._fps["color"] * 1000)
        self._syncer = rs.syncer(_SYNCER_QUEUE_SIZE)
        for sensor in sensors:
            sensor.open(sensor.get_stream_profiles()[0])
            sensor.start(self._syncer)
        self._streaming_sensors = sensors
        _LOG.info("software camera started%s", f", recording to {self.config.record_path}" if self._recorder else "")

    def stop(self) -> None:
        """Stop the sensors; a recording is complete on disk when this returns. Safe to call twice."""
        if self._syncer is None:
            return
        for sensor in self._streaming_sensors:
            sensor.stop()
            sensor.close()
        # Dropping the last references to the recorder (its sensors hold one) writes and closes the file.
        self._streaming_sensors, self._recorder, self._syncer = [], None, None

    def __enter__(self) -> SoftwareCamera:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- frames ----------------------------------------------------------------------------------

    def push(self, color_rgb8: np.ndarray, depth_raw: np.ndarray, stamp_ns: int, frame_number: int) -> None:
        """Inject one color image and its depth image captured at ``stamp_ns`` (ns, device clock).

        ``color_rgb8`` is (H, W, 3) uint8 and ``depth_raw`` (h, w) uint16 in counts of ``depth_units_m``,
        at the sizes of the color and depth intrinsics. Frame numbers should increase by one per push;
        a skipped number is reported as a dropped frame downstream.
        """
        if self._syncer is None:
            raise CameraError("push() before start()")
        color_shape = (self.color_intrinsics.height, self.color_intrinsics.width, 3)
        depth_shape = (self.depth_intrinsics.height, self.depth_intrinsics.width)
        if color_rgb8.dtype != np.uint8 or color_rgb8.shape != color_shape:
            raise ValueError(f"color_rgb8 must be uint8 {color_shape}, got {color_rgb8.dtype} {color_rgb8.shape}")
        if depth_raw.dtype != np.uint16 or depth_raw.shape != depth_shape:
            raise ValueError(f"depth_raw must be uint16 {depth_shape}, got {depth_raw.dtype} {depth_raw.shape}")
        timestamp_ms = stamp_ns / _NS_PER_MS
        self._depth_sensor.on_video_frame(
            self._software_frame(depth_raw, 2, self._depth_profile, timestamp_ms, frame_number)
        )
        self._color_sensor.on_video_frame(
            self._software_frame(color_rgb8, 3, self._color_profile, timestamp_ms, frame_number)
        )

    def _software_frame(
        self, pixels: np.ndarray, bpp: int, profile: rs.video_stream_profile, timestamp_ms: float, frame_number: int
    ) -> rs.software_video_frame:
        frame = rs.software_video_frame()
        frame.pixels = np.ascontiguousarray(pixels)
        frame.stride = pixels.shape[1] * bpp
        frame.bpp = bpp
        frame.timestamp = timestamp_ms
        frame.domain = rs.timestamp_domain.hardware_clock
        frame.frame_number = frame_number
        frame.profile = profile
        frame.depth_units = self.depth_units_m
        return frame

    def read(self, timeout_s: float) -> RGBDFrame | None:
        """Next complete RGB-D frame, or None if none is ready within ``timeout_s`` seconds.

        Single-stream framesets (see the module notes) are skipped.
        """
        if self._syncer is None:
            raise CameraError("read() before start()")
        deadline = time.monotonic() + timeout_s
        while True:
            wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
            ok, frameset = self._syncer.try_wait_for_frames(wait_ms)
            if not ok:
                return None
            frame = self._processor.process(frameset)
            if frame is not None:
                return frame

    @property
    def dropped_frames(self) -> int:
        """Frames missing from the output's frame-number sequence (skipped pushes, syncer overflow)."""
        return self._processor.dropped_frames
