"""TF publishing where ``tf2_msgs`` is installed (a ROS 2 workstation); a logged no-op where it is not.

The PyPI ROS 2 wheels ship no ``tf2_msgs``, so on the sim/test machines frames are computed in-process from the
robot description (``dexstack.robot.kinematics``) and the calibration files instead of being read from /tf.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node

from dexstack.nodes import common
from dexstack.robot.description import RobotDescription
from dexstack.robot.kinematics import Kinematics
from dexstack.transforms import transform_to_pose

try:
    from tf2_msgs.msg import TFMessage
except ImportError:  # PyPI wheels: no tf2_msgs
    TFMessage = None


def transform_msg(parent: str, child: str, T: np.ndarray, stamp) -> TransformStamped:
    xyz, quat = transform_to_pose(T)
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, xyz)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = map(float, quat)
    return msg


class TfPublisher:
    """Robot link transforms from joint positions (like robot_state_publisher) and static extrinsics."""

    def __init__(self, node: Node, description: RobotDescription):
        self.available = TFMessage is not None
        self._node = node
        if not self.available:
            node.get_logger().info("tf2_msgs is not installed: not publishing /tf (frames stay available in-process)")
            return
        self._kinematics = Kinematics(description)
        self._edges = description.link_tree()
        self._links = sorted({link for edge in self._edges for link in edge})
        self._tf = node.create_publisher(TFMessage, "/tf", 100)
        self._tf_static = node.create_publisher(TFMessage, "/tf_static", common.LATCHED_QOS)
        self._static: list[TransformStamped] = []

    def publish_static(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        if not self.available:
            return
        self._static.append(transform_msg(parent, child, T_parent_child, self._node.get_clock().now().to_msg()))
        self._tf_static.publish(TFMessage(transforms=self._static))

    def publish_robot(self, q_rad: np.ndarray, stamp) -> None:
        if not self.available:
            return
        self._kinematics.update(q_rad)
        poses = {link: self._kinematics.pose(link) for link in self._links}
        transforms = [transform_msg(p, c, np.linalg.inv(poses[p]) @ poses[c], stamp) for p, c in self._edges]
        self._tf.publish(TFMessage(transforms=transforms))
