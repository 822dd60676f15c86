"""The operator's side of the simulated cell, run inside ``sim_cell`` (node plumbing only).

- ``/dexstack/sim/human_hand/command`` (sensor_msgs/JointState, :data:`dexstack.sim.human_hand.COMMAND_NAMES`:
  the wrist pose as 7 pseudo-joints, the grasp flag, the finger joints) places the rendered human hand; ``sim_hand``
  publishes it. Malformed commands are rejected with a reason and the hand stays where it was.
- The operator camera (the cell's ``operator_calibration``) renders in its own thread and publishes under the
  realsense-ros names of its namespace, ``/operator_camera/camera/...``, stamped with the time of the rendered state.
"""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, JointState

from dexstack.diagnostics import ReasonCounter
from dexstack.nodes import common
from dexstack.nodes.camera_info import camera_info_msg
from dexstack.sim.cell import SimCell
from dexstack.sim.human_hand import HumanHandCommand

HUMAN_HAND_COMMAND_TOPIC = "/dexstack/sim/human_hand/command"
OPERATOR_CAMERA_NS = "/operator_camera/camera"


class OperatorSide:
    """Human hand commands in, operator camera out, for a :class:`SimCell` with a human hand and/or operator
    camera. ``rate_hz``: operator camera frame rate (0: no camera)."""

    def __init__(self, node: Node, cell: SimCell, rate_hz: float, stop: threading.Event) -> None:
        self.node, self.cell, self.rate_hz, self._stop = node, cell, rate_hz, stop
        self.rejections = ReasonCounter()
        self.commands = 0
        self.camera_rate = common.RateMeter(window_s=3.0)
        self.render_ms = 0.0
        if cell.human_hand is not None:
            node.create_subscription(JointState, HUMAN_HAND_COMMAND_TOPIC, self._on_command, common.SENSOR_QOS)
        self._thread = None
        cal = cell.operator_calibration
        if cal is not None and rate_hz > 0:
            ns = OPERATOR_CAMERA_NS
            self.color_pub = node.create_publisher(Image, f"{ns}/color/image_raw", common.SENSOR_QOS)
            self.color_info_pub = node.create_publisher(CameraInfo, f"{ns}/color/camera_info", common.SENSOR_QOS)
            self.depth_pub = node.create_publisher(Image, f"{ns}/aligned_depth_to_color/image_raw", common.SENSOR_QOS)
            self.depth_info_pub = node.create_publisher(
                CameraInfo, f"{ns}/aligned_depth_to_color/camera_info", common.SENSOR_QOS)
            self._thread = threading.Thread(target=self._camera_loop, name="operator_camera", daemon=True)
            self._thread.start()

    def _on_command(self, msg: JointState) -> None:
        try:
            command = HumanHandCommand.decode(msg.name, msg.position)
            self.cell.set_human_hand(command.T_base_wrist, command.q_rad, command.grasp)
            self.commands += 1
        except ValueError as exc:
            self.rejections.add(f"human hand command: {exc}")
            self.node.get_logger().warning(f"rejected human hand command, hand stays: {exc}",
                                           throttle_duration_sec=1.0)

    def _camera_loop(self) -> None:
        try:
            self._run_camera()
        except Exception:
            if rclpy.ok(context=self.node.context):
                raise

    def _run_camera(self) -> None:
        from dexstack.sim.camera import SimCamera  # the GL context belongs to this thread

        cal = self.cell.operator_calibration
        camera = SimCamera(self.cell, camera=self.cell.operator_camera)
        next_frame = time.monotonic()
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                stamp = self.node.get_clock().now().to_msg()  # time of the rendered state
                image = camera.render()
                self.render_ms = 1000.0 * (time.monotonic() - t0)
                h, w = image.depth_mm.shape
                color = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                              data=image.color_rgb8.tobytes())
                depth = Image(height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w,
                              data=image.depth_mm.tobytes())
                for img in (color, depth):
                    img.header.stamp = stamp
                    img.header.frame_id = cal.frame_id
                info = camera_info_msg(cal.intrinsics, stamp, cal.frame_id)
                self.color_pub.publish(color)
                self.color_info_pub.publish(info)
                self.depth_pub.publish(depth)
                self.depth_info_pub.publish(info)
                self.camera_rate.tick()
                next_frame = max(next_frame + 1.0 / self.rate_hz, time.monotonic())
                self._stop.wait(max(0.0, next_frame - time.monotonic()))
        finally:
            camera.close()

    def diagnostics(self) -> dict[str, str]:
        rejected = self.rejections.counts()
        return {"operator_camera_hz": f"{self.camera_rate.rate_hz():.2f}",
                "operator_render_ms": f"{self.render_ms:.1f}",
                "human_hand_commands": str(self.commands),
                "human_hand_rejected": str(sum(rejected.values()))}

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=2.0)
