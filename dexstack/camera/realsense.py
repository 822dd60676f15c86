"""RGB-D frames from a RealSense device or a ``.db3`` recording, through ``rs.pipeline``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

from dexstack.camera.config import CameraConfig, parse_profile, validate_config
from dexstack.camera.errors import CameraError, PlaybackEnded
from dexstack.camera.processing import FrameProcessor, extrinsics_from_rs
from dexstack.camera.types import RGBDFrame

_LOG = logging.getLogger(__name__)

_WAIT_SLICE_S = 0.05  # how often read() checks for end of playback while waiting


def describe_connected_devices(context: rs.context | None = None) -> list[str]:
    """``"<name> (serial <serial>)"`` for every RealSense device librealsense can see."""
    devices = (context or rs.context()).query_devices()
    return [
        f"{dev.get_info(rs.camera_info.name)} (serial {dev.get_info(rs.camera_info.serial_number)})"
        for dev in devices
    ]


class RealSenseSource:
    """Opens ``config.source`` = ``"device"`` or ``"playback"`` and yields :class:`RGBDFrame`.

    Streams are depth z16 and color rgb8 at the configured profiles (device) or as recorded (playback).
    Frame stamps are the SDK's per-frame timestamps (``frame.get_timestamp()``, ms) in the domain the
    device reports, converted to integer ns; they are never the host time of processing.

    Not thread-safe: call ``start``/``read``/``stop`` from one thread.
    """

    def __init__(self, config: CameraConfig):
        if config.source == "software":
            raise CameraError("source 'software' has no device to open; use dexstack.camera.software.SoftwareCamera")
        self.config = config
        self._pipeline: rs.pipeline | None = None
        self._profile: rs.pipeline_profile | None = None
        self._playback: rs.playback | None = None
        self._processor = FrameProcessor.from_config(config)
        self._ended = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open and start streaming. Raises CameraError with what to check when it cannot."""
        if self._pipeline is not None:
            return
        errors = validate_config(self.config)
        if errors:
            raise CameraError("invalid camera config: " + "; ".join(errors))
        rs_config = self._device_config() if self.config.source == "device" else self._playback_config()
        pipeline = rs.pipeline()
        try:
            # Resolving first yields the very device start() will use, so playback pacing is set before
            # the first frame is read (set after start(), real-time playback can already have dropped it).
            device = rs_config.resolve(rs.pipeline_wrapper(pipeline)).get_device()
            if device.is_playback():
                self._playback = device.as_playback()
                self._playback.set_real_time(self.config.playback_real_time)
            profile = pipeline.start(rs_config)
        except RuntimeError as exc:
            self._playback = None
            raise CameraError(self._start_failure(exc)) from exc
        self._pipeline, self._profile, self._ended = pipeline, profile, False
        _LOG.info(
            "camera started: %s (serial %s), streams %s",
            device.get_info(rs.camera_info.name),
            device.get_info(rs.camera_info.serial_number),
            ", ".join(str(s) for s in profile.get_streams()),
        )

    def stop(self) -> None:
        """Stop streaming (and finalize a recording). Safe to call more than once."""
        if self._pipeline is None:
            return
        pipeline, self._pipeline, self._profile, self._playback = self._pipeline, None, None, None
        pipeline.stop()

    def __enter__(self) -> RealSenseSource:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- frames ----------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> RGBDFrame | None:
        """Next RGB-D frame, or None if none arrived within ``timeout_s`` seconds.

        Raises PlaybackEnded once a non-repeating playback has no frames left (and on every later call).
        """
        if self._pipeline is None:
            raise CameraError("read() before start()")
        if self._ended:
            raise PlaybackEnded(f"playback of {self.config.playback_path} has ended")
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_s = deadline - time.monotonic()
            wait_ms = max(1, int(min(remaining_s, _WAIT_SLICE_S) * 1000))
            ok, frameset = self._pipeline.try_wait_for_frames(wait_ms)
            if not ok and self._playback_stopped():
                frameset = self._pipeline.poll_for_frames()  # the last frames may land as it stops
                ok = bool(frameset)
                if not ok:
                    self._ended = True
                    raise PlaybackEnded(f"playback of {self.config.playback_path} has ended")
            if ok:
                frame = self._processor.process(frameset)
                if frame is not None:
                    return frame
            if remaining_s <= 0:
                return None

    # -- state -----------------------------------------------------------------------------------

    @property
    def dropped_frames(self) -> int:
        """Frames missing from the frame-number sequence since construction."""
        return self._processor.dropped_frames

    @property
    def playback_ended(self) -> bool:
        return self._ended

    @property
    def T_color_depth(self) -> np.ndarray:
        """4x4 transform (metres) from the depth optical frame to the color optical frame."""
        if self._profile is None:
            raise CameraError("T_color_depth is known only after start()")
        depth = self._profile.get_stream(rs.stream.depth)
        color = self._profile.get_stream(rs.stream.color)
        return extrinsics_from_rs(depth.get_extrinsics_to(color))

    # -- internals -------------------------------------------------------------------------------

    def _device_config(self) -> rs.config:
        context = rs.context()
        serials = [dev.get_info(rs.camera_info.serial_number) for dev in context.query_devices()]
        found = ", ".join(describe_connected_devices(context)) or "none"
        if self.config.serial and self.config.serial not in serials:
            raise CameraError(
                f"RealSense with serial {self.config.serial!r} not found; connected: {found}. "
                "Check the serial (rs-enumerate-devices) or leave serial empty to use the first device."
            )
        if not serials:
            raise CameraError(
                "no RealSense device connected (librealsense found 0 devices). Check the USB3 cable and "
                "udev rules, or use source 'playback' with a .db3 recording."
            )
        rs_config = rs.config()
        rs_config.enable_device(self.config.serial or serials[0])
        dw, dh, dfps = parse_profile(self.config.depth_profile)
        cw, ch, cfps = parse_profile(self.config.color_profile)
        rs_config.enable_stream(rs.stream.depth, dw, dh, rs.format.z16, dfps)
        rs_config.enable_stream(rs.stream.color, cw, ch, rs.format.rgb8, cfps)
        if self.config.record_path:
            rs_config.enable_record_to_file(self.config.record_path)
        return rs_config

    def _playback_config(self) -> rs.config:
        path = Path(self.config.playback_path)
        if not path.is_file():
            raise CameraError(f"playback file not found: {path}")
        if not os.access(path, os.R_OK):
            raise CameraError(f"playback file is not readable: {path}")
        rs_config = rs.config()
        rs_config.enable_device_from_file(str(path), repeat_playback=self.config.repeat_playback)
        rs_config.enable_stream(rs.stream.depth)  # recorded profiles: any size and rate
        rs_config.enable_stream(rs.stream.color)
        return rs_config

    def _start_failure(self, exc: RuntimeError) -> str:
        if self.config.source == "playback":
            return (
                f"cannot play back {self.config.playback_path}: {exc}. It must be a librealsense recording "
                "(.db3 from rs.recorder / enable_record_to_file) with a depth and a color stream."
            )
        return (
            f"cannot start RealSense streams depth {self.config.depth_profile} z16 + color "
            f"{self.config.color_profile} rgb8: {exc}. Check that the device supports these profiles "
            "(rs-enumerate-devices) and is on a USB3 port."
        )

    def _playback_stopped(self) -> bool:
        return self._playback is not None and self._playback.current_status() == rs.playback_status.stopped
