"""The operator's side of the simulated cell, run inside ``sim_cell`` (node plumbing only).

- ``/dexstack/sim/human_hand/command`` (sensor_msgs/JointState, :data:`dexstack.sim.human_hand.COMMAND_NAMES`:
  the wrist pose as 7 pseudo-joints, the grasp flag, the finger joints) places the rendered human hand; ``sim_hand``
  publishes it. Malformed commands are rejected with a reason and the hand stays where it was.
- The operator camera (the cell's ``operator_calibration``) renders (in a niced child process by default) and
  publishes under the realsense-ros names of its namespace, ``/operator_camera/camera/...``, stamped with the time
  of the rendered state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from builtin_interfaces.msg import Time
from rclpy.node import Node
from sensor_msgs.msg import JointState

from dexstack.diagnostics import ReasonCounter
from dexstack.nodes import common
from dexstack.nodes.sim_camera_stream import SimCameraStream
from dexstack.sim.cell import SimCell
from dexstack.sim.human_hand import HumanHandCommand

HUMAN_HAND_COMMAND_TOPIC = "/dexstack/sim/human_hand/command"
OPERATOR_CAMERA_NS = "/operator_camera/camera"


class OperatorSide:
    """Human hand commands in, operator camera out, for a :class:`SimCell` with a human hand and/or operator
    camera. ``rate_hz``: operator camera frame rate (0: no camera); the other keywords as
    :class:`~dexstack.nodes.sim_camera_stream.SimCameraStream`'s."""

    def __init__(self, node: Node, cell: SimCell, rate_hz: float, stop: threading.Event, *,
                 camera_clock_s: Callable[[], float], stamp_of: Callable[[float], Time], render_process: bool,
                 render_nice: int) -> None:
        self.node, self.cell = node, cell
        self.rejections = ReasonCounter()
        self.commands = 0
        if cell.human_hand is not None:
            node.create_subscription(JointState, HUMAN_HAND_COMMAND_TOPIC, self._on_command, common.SENSOR_QOS)
        self.camera = None
        cal = cell.operator_calibration
        if cal is not None and rate_hz > 0:
            self.camera = SimCameraStream(
                node, cell, "operator", OPERATOR_CAMERA_NS, intrinsics=cal.intrinsics, frame_id=cal.frame_id,
                rate_hz=lambda: rate_hz, now_s=camera_clock_s, stamp_of=stamp_of, stop=stop,
                render_process=render_process, render_nice=render_nice, thread_name="operator_cam")

    def _on_command(self, msg: JointState) -> None:
        try:
            command = HumanHandCommand.decode(msg.name, msg.position)
            self.cell.set_human_hand(command.T_base_wrist, command.q_rad, command.grasp)
            self.commands += 1
        except ValueError as exc:
            self.rejections.add(f"human hand command: {exc}")
            self.node.get_logger().warning(f"rejected human hand command, hand stays: {exc}",
                                           throttle_duration_sec=1.0)

    def diagnostics(self) -> dict[str, str]:
        rejected = self.rejections.counts()
        camera = (self.camera.diagnostics("operator_") if self.camera is not None
                  else {"operator_camera_hz": "0.00", "operator_render_ms": "0.0"})
        return {**camera,
                "human_hand_commands": str(self.commands),
                "human_hand_rejected": str(sum(rejected.values()))}

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
