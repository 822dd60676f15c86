"""camera: a RealSense (``source: device``) or a librealsense ``.db3`` recording (``source: playback``) published
under realsense-ros names. The simulated cell's camera is not this node: ``sim_cell`` publishes it itself on the same
topics.

Topics (prefix ``/<camera_namespace>/<camera_name>``, default ``/camera/camera``):
``color/image_raw`` (rgb8) + ``color/camera_info``; with ``align_depth`` ``aligned_depth_to_color/image_raw`` (16UC1,
mm) + ``aligned_depth_to_color/camera_info`` in the color optical frame, otherwise ``depth/image_rect_raw`` +
``depth/camera_info`` in the depth optical frame; with ``publish_pointcloud`` ``depth/color/points``. Stamps are the
frames' own capture stamps converted to ROS time (:mod:`dexstack.camera.stamps`), never the publish time.

A capture thread reads the source, builds every message of a frame completely, then publishes them. Failures (no
device, unplugged, missing file, end of playback) are reported on ``/diagnostics`` and the node keeps running: a
device or file is retried every ``reconnect_period_s``, a finished playback stays stopped until a parameter that
selects the source changes (or loops with ``repeat_playback``).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from dexstack import image_codec
from dexstack.camera import CameraConfig, CameraError, PlaybackEnded, RGBDFrame, parse_profile
from dexstack.camera.config import validate_config
from dexstack.camera.ros_conventions import organized_point_cloud
from dexstack.camera.stamps import StampConverter
from dexstack.diagnostics import Level, StatusReport
from dexstack.nodes import common
from dexstack.nodes.camera_info import camera_info_msg

if TYPE_CHECKING:
    from dexstack.camera import RealSenseSource

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_READ_SLICE_S = 0.1  # the capture thread checks for stop/restart at least this often
_STALL_LOG_PERIOD_S = 30.0


def _check_profile(name: str):
    def check(value: str) -> str | None:
        try:
            parse_profile(value)
        except ValueError as exc:
            return f"{name}: {exc}"
        return None
    return check


def _check_name(name: str, allow_empty: bool = False):
    def check(value: str) -> str | None:
        if (allow_empty and value == "") or _NAME_RE.match(value):
            return None
        return f"{name}={value!r} is not a valid ROS name token (letters, digits, '_', starting with a letter)"
    return check


@dataclass
class Params:
    source: str = common.param(
        "device", "Where frames come from: 'device' (a connected RealSense: serial, or the first one) or 'playback' "
        "(the librealsense .db3 recording at playback_path, paced in real time). The simulated camera is not a source "
        "here: sim_cell publishes it itself under the same topic names.", choices=("device", "playback"))
    serial: str = common.param("", "Serial number of the RealSense to open (empty: the first one found). Quote "
                                   "numeric serials in YAML/launch files so they stay strings.")
    playback_path: str = common.param("", "Recording (.db3, librealsense rosbag2) played when source is 'playback'.")
    repeat_playback: bool = common.param(False, "Loop the recording; false: stop after its last frame.")
    color_profile: str = common.param("640x480x30", "Color stream WIDTHxHEIGHTxFPS (device; a recording keeps its "
                                                    "own).", validate=_check_profile("color_profile"))
    depth_profile: str = common.param("640x480x30", "Depth stream WIDTHxHEIGHTxFPS (device; a recording keeps its "
                                                    "own).", validate=_check_profile("depth_profile"))
    align_depth: bool = common.param(True, "Reproject depth into the color camera (aligned_depth_to_color topics); "
                                           "false: depth/image_rect_raw in the depth camera's own frame.")
    decimation_filter: bool = common.param(False, "librealsense decimation filter (halves depth width and height "
                                                  "before alignment).")
    spatial_filter: bool = common.param(False, "librealsense edge-preserving spatial filter on depth.")
    temporal_filter: bool = common.param(False, "librealsense temporal filter on depth.")
    hole_filling_filter: bool = common.param(False, "librealsense hole-filling filter on depth.")
    record_path: str = common.param(
        "", "Record the device's raw streams to this .db3 (e.g. next to the episode data); an existing file is never "
            "overwritten: each session gets the first free name <stem>_<n>.db3. Device source only.")
    publish_pointcloud: bool = common.param(
        False, "Also publish depth/color/points (PointCloud2, organized, xyz+rgb in the color optical frame when "
               "aligned, else xyz in the depth optical frame; lens distortion ignored).")
    pointcloud_stride: int = common.param(2, "Point cloud decimation: every n-th pixel in u and v.", min=1, max=16)
    camera_name: str = common.param("camera", "Camera name: topic prefix and <camera_name>_color_optical_frame.",
                                    read_only=True, validate=_check_name("camera_name"))
    camera_namespace: str = common.param("camera", "Topic namespace before camera_name (realsense-ros: "
                                                   "/camera/camera/...); empty for /<camera_name>/....",
                                         read_only=True, validate=_check_name("camera_namespace", allow_empty=True))
    reconnect_period_s: float = common.param(2.0, "Retry period for a missing/unplugged device or unreadable file.",
                                             min=0.1, max=60.0)
    frame_timeout_s: float = common.param(5.0, "A started source that delivers no frame for this long is closed and "
                                               "reopened (unplugged cable, stalled USB).", min=0.5, max=120.0)
    diagnostics_rate_hz: float = common.param(1.0, "Rate of /diagnostics (also sent on every state change).",
                                              min=0.1, max=10.0, read_only=True)


# Parameters read when the source is opened: a change reopens it.
SOURCE_PARAMS = frozenset({
    "source", "serial", "playback_path", "repeat_playback", "color_profile", "depth_profile", "align_depth",
    "decimation_filter", "spatial_filter", "temporal_filter", "hole_filling_filter", "record_path"})


def camera_config(params: Params) -> CameraConfig:
    return CameraConfig(
        source=params.source, serial=params.serial, playback_path=params.playback_path,
        color_profile=params.color_profile, depth_profile=params.depth_profile, align_depth=params.align_depth,
        decimation_filter=params.decimation_filter, spatial_filter=params.spatial_filter,
        temporal_filter=params.temporal_filter, hole_filling_filter=params.hole_filling_filter,
        record_path=params.record_path if params.source == "device" else "",
        repeat_playback=params.repeat_playback, playback_real_time=True)


def _validate_all(params: Params) -> str | None:
    errors = validate_config(camera_config(params))
    if params.source == "playback" and params.record_path:
        errors.append("record_path records the device's raw streams; it cannot be used with source 'playback'")
    return "; ".join(errors) or None


def free_record_path(path: str) -> Path:
    """``path`` if no file is there, else the first free ``<stem>_<n>.db3`` beside it (never overwrite data)."""
    p = Path(path)
    n = 1
    while p.exists():
        p = Path(path).with_name(f"{Path(path).stem}_{n}{Path(path).suffix}")
        n += 1
    return p


def _image(stamp, frame_id: str, pixels, encoding: str, _bytes_per_pixel: int) -> Image:
    msg = Image(**image_codec.encode(pixels, encoding))
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def _point_cloud(stamp, frame_id: str, frame: RGBDFrame, stride: int) -> PointCloud2:
    color = frame.color_rgb8 if frame.depth_aligned else None
    cloud = organized_point_cloud(frame.depth_mm, frame.depth_intrinsics, stride, color)
    msg = PointCloud2()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(cloud.shape[0]), int(cloud.shape[1])
    msg.fields = [PointField(name=name, offset=cloud.dtype.fields[name][1], datatype=PointField.FLOAT32, count=1)
                  for name in cloud.dtype.names]  # rgb: packed uint32 in a FLOAT32 field, as PCL and realsense-ros
    msg.is_bigendian = False
    msg.point_step = cloud.dtype.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = False  # pixels without depth are NaN
    msg.data = cloud.tobytes()
    return msg


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera")
        self.params = common.declare_params(self, Params, on_change=self._on_param_change,
                                            validate_all=_validate_all)
        p = self.params
        prefix = f"/{p.camera_namespace}/{p.camera_name}" if p.camera_namespace else f"/{p.camera_name}"
        self.topic_prefix = prefix
        self.color_frame = f"{p.camera_name}_color_optical_frame"
        self.depth_frame = f"{p.camera_name}_depth_optical_frame"
        pub = self.create_publisher
        self.color_pub = pub(Image, f"{prefix}/color/image_raw", common.SENSOR_QOS)
        self.color_info_pub = pub(CameraInfo, f"{prefix}/color/camera_info", common.SENSOR_QOS)
        self.aligned_pub = pub(Image, f"{prefix}/aligned_depth_to_color/image_raw", common.SENSOR_QOS)
        self.aligned_info_pub = pub(CameraInfo, f"{prefix}/aligned_depth_to_color/camera_info", common.SENSOR_QOS)
        self.depth_pub = pub(Image, f"{prefix}/depth/image_rect_raw", common.SENSOR_QOS)
        self.depth_info_pub = pub(CameraInfo, f"{prefix}/depth/camera_info", common.SENSOR_QOS)
        self.cloud_pub = pub(PointCloud2, f"{prefix}/depth/color/points", common.SENSOR_QOS)
        self.diag_pub = pub(common.DiagnosticArray, "/diagnostics", 10)
        self._diag_lock = threading.Lock()

        # State shared with the diagnostics timer (written by the capture thread only).
        self.state = "starting"
        self.level = Level.OK
        self.message = "opening the source"
        self.frames_published = 0
        self.session_frames = 0  # frames published since the source was last opened
        self.publish_dropped = 0  # frames read but not published in full (message build or publish failed)
        self.open_failures = 0
        self.read_errors = 0
        self.stalls = 0
        self.opens = 0
        self.last_error = ""
        self.last_frame: RGBDFrame | None = None
        self.recording = ""
        self._dropped_closed = 0  # core drops of sources already closed
        self._source: RealSenseSource | None = None
        self.publish_rate = common.RateMeter(window_s=3.0)
        self.stamps = StampConverter(rebase_all=p.source == "playback")

        self._stop = threading.Event()
        self._restart = threading.Event()
        self.context.on_shutdown(self._stop.set)
        common.live_rate_timer(self, "diagnostics_rate_hz", p.diagnostics_rate_hz, self.publish_diagnostics)
        self._thread = threading.Thread(target=self._capture_loop, name="camera_capture", daemon=True)
        self._thread.start()
        self.get_logger().info(f"camera node up: source '{p.source}', topics {prefix}/...")

    # ------------------------------------------------------------------ parameters
    def _on_param_change(self, name: str, _value) -> None:
        if name in SOURCE_PARAMS:
            self._restart.set()  # the capture thread reopens the source with the new values

    # ------------------------------------------------------------------ capture thread
    @property
    def dropped_frames(self) -> int:
        source = self._source
        return self._dropped_closed + (source.dropped_frames if source is not None else 0)

    def _set_state(self, state: str, level: Level, message: str, log=None) -> None:
        changed = (state, message) != (self.state, self.message)
        self.state, self.level, self.message = state, level, message
        if changed:
            if log is not None:
                log(message)
            self.publish_diagnostics()

    def _capture_loop(self) -> None:
        next_open = 0.0
        last_frame_s = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if self._restart.is_set():
                        self._restart.clear()
                        self._close_source()
                        self._set_state("starting", Level.OK, "reopening the source with new parameters",
                                        self.get_logger().info)
                        next_open = 0.0
                    if self._source is None:
                        if self.state == "ended" or time.monotonic() < next_open:
                            self._stop.wait(0.05)
                            continue
                        if not self._open_source():
                            next_open = time.monotonic() + self.params.reconnect_period_s
                        last_frame_s = time.monotonic()
                        continue
                    try:
                        frame = self._source.read(timeout_s=_READ_SLICE_S)
                    except PlaybackEnded:
                        self._close_source()
                        self._set_state(
                            "ended", Level.WARN,
                            f"playback of {self.params.playback_path} ended after {self.session_frames} frames "
                            "published; set repeat_playback or playback_path to play again", self.get_logger().info)
                        continue
                    if frame is None:
                        if time.monotonic() - last_frame_s > self.params.frame_timeout_s:
                            self.stalls += 1
                            self._close_source()
                            self._set_state("stalled", Level.WARN,
                                            f"no frame for {self.params.frame_timeout_s:.1f} s; reopening the source",
                                            self.get_logger().warning)
                            next_open = time.monotonic() + self.params.reconnect_period_s
                        continue
                    last_frame_s = time.monotonic()
                    self._publish_frame(frame)
                except Exception as exc:  # noqa: BLE001  unplugged device, USB or file read error; a bug is logged with its trace
                    if self._stop.is_set():
                        break
                    if not isinstance(exc, (CameraError, RuntimeError)):
                        self.get_logger().error(f"unexpected error in the capture thread:\n{traceback.format_exc()}")
                    self.read_errors += 1
                    self.last_error = str(exc) or repr(exc)
                    self._close_source()
                    self._set_state("error", Level.ERROR, f"camera error: {self.last_error}; retrying every "
                                    f"{self.params.reconnect_period_s:.1f} s", self.get_logger().error)
                    next_open = time.monotonic() + self.params.reconnect_period_s
        finally:
            self._close_source()

    def _open_source(self) -> bool:
        config = camera_config(self.params)
        if config.record_path:
            path = free_record_path(config.record_path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.open_failures += 1
                self._fail_open(f"cannot create the recording folder {path.parent}: {exc}")
                return False
            config = dataclasses.replace(config, record_path=str(path))
        from dexstack.camera import RealSenseSource  # librealsense loads here: modules importing this node stay free

        source = RealSenseSource(config)
        try:
            source.start()
        except CameraError as exc:
            self.open_failures += 1
            self._fail_open(str(exc))
            return False
        self._source = source
        self.opens += 1
        self.session_frames = 0
        self.recording = config.record_path
        self.stamps.rebase_all = config.source == "playback"
        self.stamps.restart()
        what = f"playback of {config.playback_path}" if config.source == "playback" else "device"
        self._set_state("streaming", Level.OK, f"streaming from {what}"
                        + (f", recording to {config.record_path}" if config.record_path else ""),
                        self.get_logger().info)
        return True

    def _fail_open(self, reason: str) -> None:
        self.last_error = reason
        self._set_state("no_device" if self.params.source == "device" else "error", Level.ERROR,
                        f"{reason} (retrying every {self.params.reconnect_period_s:.1f} s)", self.get_logger().error)

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is None:
            return
        self._dropped_closed += source.dropped_frames
        try:
            source.stop()
        except RuntimeError as exc:  # an unplugged device can fail to stop; it is gone either way
            self.get_logger().warning(f"error while stopping the camera: {exc}")
        self.recording = ""

    def _publish_frame(self, frame: RGBDFrame) -> None:
        """Build every message of the frame, then publish them: a frame is published whole or not at all."""
        try:
            now_ns = self.get_clock().now().nanoseconds
            stamp = common.stamp_from_ns(self.stamps.to_ros_ns(frame.stamp_ns, frame.stamp_domain, now_ns))
            color_info = camera_info_msg(frame.color_intrinsics, stamp, self.color_frame)
            messages = [(self.color_pub, _image(stamp, self.color_frame, frame.color_rgb8, "rgb8", 3)),
                        (self.color_info_pub, color_info)]
            if frame.depth_aligned:
                depth_frame = self.color_frame
                messages += [(self.aligned_pub, _image(stamp, depth_frame, frame.depth_mm, "16UC1", 2)),
                             (self.aligned_info_pub, camera_info_msg(frame.depth_intrinsics, stamp, depth_frame))]
            else:
                depth_frame = self.depth_frame
                messages += [(self.depth_pub, _image(stamp, depth_frame, frame.depth_mm, "16UC1", 2)),
                             (self.depth_info_pub, camera_info_msg(frame.depth_intrinsics, stamp, depth_frame))]
            if self.params.publish_pointcloud:
                messages.append((self.cloud_pub, _point_cloud(stamp, depth_frame, frame,
                                                              self.params.pointcloud_stride)))
        except ValueError as exc:  # e.g. an intrinsics model or layout the messages cannot carry
            self.publish_dropped += 1
            self.last_error = f"frame {frame.frame_number} not published: {exc}"
            self.get_logger().error(self.last_error, throttle_duration_sec=5.0)
            return
        try:
            for publisher, msg in messages:
                publisher.publish(msg)
        except Exception:
            self.publish_dropped += 1
            if not rclpy.ok(context=self.context) or self._stop.is_set():
                return  # publishing raced shutdown
            raise
        self.frames_published += 1
        self.session_frames += 1
        self.last_frame = frame
        self.publish_rate.tick()

    # ------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        frame = self.last_frame
        values = {
            "state": self.state,
            "source": self.params.source,
            "frames_published": self.frames_published,
            "publish_hz": f"{self.publish_rate.rate_hz():.2f}",
            "dropped_frames": self.dropped_frames,
            "publish_dropped": self.publish_dropped,
            "opens": self.opens,
            "open_failures": self.open_failures,
            "read_errors": self.read_errors,
            "stalls": self.stalls,
            "stamp_reanchors": self.stamps.reanchor_total,
            **{f"stamp_reanchors[{reason}]": n for reason, n in sorted(dict(self.stamps.reanchors).items())},
            "last_error": self.last_error,
            "recording": self.recording,
        }
        if frame is not None:
            values.update({
                "color_size": f"{frame.color_intrinsics.width}x{frame.color_intrinsics.height}",
                "depth_size": f"{frame.depth_intrinsics.width}x{frame.depth_intrinsics.height}",
                "depth_aligned": str(frame.depth_aligned).lower(),
                "stamp_domain": frame.stamp_domain,
                "last_frame_number": frame.frame_number,
            })
        report = StatusReport(self.get_name(), self.level, self.message, {k: str(v) for k, v in values.items()})
        with self._diag_lock:
            try:
                self.diag_pub.publish(common.diagnostic_array(self, [report]))
            except Exception:
                if rclpy.ok(context=self.context) and not self._stop.is_set():
                    raise

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def main(args: list[str] | None = None) -> None:
    common.run_node(CameraNode, args)


if __name__ == "__main__":
    main()
