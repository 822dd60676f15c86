"""Shared RGB-D input of perception nodes: color + aligned depth + camera_info subscriptions, paired by stamp.

Node plumbing only (subscriptions, QoS, logging); the pairing lives in dexstack.perception.rgbd, image
decoding in dexstack.image_codec.
"""

from __future__ import annotations

import time

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from dexstack.camera_model import CameraModel
from dexstack.diagnostics import ReasonCounter
from dexstack.image_codec import ImageError, color_to_rgb8, depth_to_array
from dexstack.nodes import common
from dexstack.perception.rgbd import StampPairer

CAMERA_NS = "camera/camera"
COLOR_TOPIC = f"{CAMERA_NS}/color/image_raw"
DEPTH_TOPIC = f"{CAMERA_NS}/aligned_depth_to_color/image_raw"
DEPTH_INFO_TOPIC = f"{CAMERA_NS}/aligned_depth_to_color/camera_info"
# Only the newest image counts: a node still busy with one frame then takes the latest, not a queued older one
# (with a queue of 2 a 30 ms detector added up to a frame period of latency).
IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


class RgbdInput:
    """Color + aligned depth + camera_info subscriptions; calls ``on_frame(stamp, header, rgb, depth, camera)``
    for each stamp-paired frame. Intrinsics from camera_info once received, else from the calibration."""

    def __init__(self, node: Node, calibration, tolerance_s: float, on_frame) -> None:
        self.node = node
        self.calibration = calibration
        self.on_frame = on_frame
        self.pairer: StampPairer = StampPairer(int(tolerance_s * 1e9))
        self.camera = calibration.intrinsics
        self.frames_in = common.RateMeter(window_s=3.0)
        self.bad_images = ReasonCounter()
        self.last_frame_s: float | None = None
        self._warned_frame = False
        node.create_subscription(Image, COLOR_TOPIC, self._on_color, IMAGE_QOS)
        node.create_subscription(Image, DEPTH_TOPIC, self._on_depth, IMAGE_QOS)
        node.create_subscription(CameraInfo, DEPTH_INFO_TOPIC, self._on_info, common.SENSOR_QOS)

    def set_tolerance(self, tolerance_s: float) -> None:
        self.pairer.tolerance_ns = int(tolerance_s * 1e9)

    def _on_info(self, msg: CameraInfo) -> None:
        if msg.width > 0 and msg.k[0] > 0:
            try:
                self.camera = CameraModel.from_camera_info(msg)
            except ValueError as exc:  # e.g. D does not match distortion_model: keep the last good model
                self.node.get_logger().warning(f"camera_info ignored: {exc}", throttle_duration_sec=5.0)
        if msg.header.frame_id and msg.header.frame_id != self.calibration.frame_id and not self._warned_frame:
            self._warned_frame = True
            self.node.get_logger().warning(
                f"camera_info frame '{msg.header.frame_id}' is not the calibration's '{self.calibration.frame_id}'")

    def _on_color(self, msg: Image) -> None:
        self._pair(self.pairer.add_color(common.stamp_to_ns(msg.header.stamp), msg))

    def _on_depth(self, msg: Image) -> None:
        self._pair(self.pairer.add_depth(common.stamp_to_ns(msg.header.stamp), msg))

    def _pair(self, pair) -> None:
        if pair is None:
            return
        try:
            c, d = pair.color, pair.depth
            rgb = color_to_rgb8(c.height, c.width, c.encoding, c.step, c.data)
            depth = depth_to_array(d.height, d.width, d.encoding, d.step, d.data, bool(d.is_bigendian))
            if rgb.shape[:2] != depth.shape:
                raise ImageError(f"color {rgb.shape[:2]} and depth {depth.shape} sizes differ (depth not aligned?)")
        except ImageError as exc:
            self.bad_images.add(str(exc))
            self.node.get_logger().warning(f"dropped an RGB-D frame: {exc}", throttle_duration_sec=5.0)
            return
        self.frames_in.tick()
        self.last_frame_s = time.monotonic()
        try:
            self.on_frame(pair.stamp_ns, pair.color.header, rgb, depth, self.camera)
        except Exception:  # a publish racing shutdown (SIGINT mid-frame) is fine; anything else is a bug
            if rclpy.ok(context=self.node.context):
                raise
