"""sim_hand: a scripted human hand for the simulated cell, published like ``hand_pose`` publishes a real one.

``/dexstack/hand_keypoints`` (geometry_msgs/PoseArray, 21 MANO-order points in the robot base frame, stamped with
the time of the "capture"), at ``rate_hz``. ``visible: false`` publishes empty arrays (the hand left the view).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node

from dexstack.nodes import common
from dexstack.robot.description import load_description
from dexstack.teleop import ScriptedHumanHand


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile.", read_only=True)
    retarget_config: str = common.param("allegro_right", "Retargeting config the hand motion comes from.",
                                        read_only=True)
    rate_hz: float = common.param(30.0, "Keypoint rate (a camera's frame rate).", read_only=True, min=1.0, max=120.0)
    wrist_amplitude_m: float = common.param(0.06, "Size of the wrist's ellipse.", read_only=True, min=0.0, max=0.3)
    visible: bool = common.param(True, "false: publish 'no hand' (empty arrays).")


class SimHandNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_hand")
        self.params = common.declare_params(self, Params)
        description = load_description(self.params.robot_profile)
        self.hand = ScriptedHumanHand(description, self.params.retarget_config, rate_hz=self.params.rate_hz,
                                      wrist_amplitude_m=self.params.wrist_amplitude_m)
        self.frame_id = description.base_frame
        self.pub = self.create_publisher(PoseArray, "dexstack/hand_keypoints", common.SENSOR_QOS)
        self.start = time.monotonic()
        self.create_timer(1.0 / self.params.rate_hz, self._tick)

    def _tick(self) -> None:
        msg = PoseArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        if self.params.visible:
            for x, y, z in self.hand.keypoints_base(time.monotonic() - self.start):
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
                pose.orientation.w = 1.0
                msg.poses.append(pose)
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    common.run_node(SimHandNode, args)


if __name__ == "__main__":
    main()
