"""sim_hand: a scripted human hand for the simulated cell.

Two modes (``mode``, read-only):

- ``keypoints`` (default; no rendering): publishes ``/dexstack/hand_keypoints`` (geometry_msgs/PoseArray, 21
  MANO-order points in the robot base frame, stamped with the time of the "capture"), like ``hand_pose`` publishes a
  real hand: the fingers follow a smooth random motion of the robot hand itself, the wrist a slow ellipse.
  ``visible: false`` publishes empty arrays (the hand left the view).
- ``rendered``: drives the cell's rendered human hand (``dexstack/sim/human_hand.py``) through the gesture script
  (open hand, pinch, power grasp, pointing, wrist rotations to +/-60 deg, partly leaving the operator camera's view;
  ``dexstack.teleop.scripted_hand.GESTURES``) by publishing ``/dexstack/sim/human_hand/command``
  (sensor_msgs/JointState, see ``dexstack.nodes.sim_operator``) to ``sim_cell``, which renders it in the operator
  camera; ``hand_pose`` then finds it. ``visible: false`` moves the hand out of the view.

Both modes publish the ground truth on ``/dexstack/sim/hand_keypoints_gt`` (PoseArray, base frame, stamped with
the time the hand was placed there): for evaluation only, never read by controllers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState

from dexstack.nodes import common
from dexstack.nodes.sim_operator import HUMAN_HAND_COMMAND_TOPIC
from dexstack.robot.description import load_description
from dexstack.teleop import ScriptedHumanHand
from dexstack.teleop.scripted_hand import GestureScript

GT_TOPIC = "/dexstack/sim/hand_keypoints_gt"
OUT_OF_VIEW_OFFSET_M = np.array([0.0, 0.0, -2.0])  # "visible: false" in rendered mode: below the floor


@dataclass
class Params:
    mode: str = common.param("keypoints", "'keypoints': publish keypoints directly (no rendering); 'rendered': "
                             "drive the cell's rendered human hand.", read_only=True, choices=("keypoints", "rendered"))
    cell: str = common.param("tabletop_teleop", "Cell config with the human hand (rendered mode).", read_only=True)
    robot_profile: str = common.param("panda_allegro", "Robot profile.", read_only=True)
    retarget_config: str = common.param("", "Retargeting config the hand motion comes from (keypoints mode); '': "
                                        "the one made for robot_profile.", read_only=True)
    rate_hz: float = common.param(30.0, "Update rate (a camera's frame rate).", read_only=True, min=1.0, max=120.0)
    wrist_amplitude_m: float = common.param(0.06, "Size of the wrist's ellipse (keypoints mode).", read_only=True,
                                            min=0.0, max=0.3)
    speed: float = common.param(1.0, "Playback speed of the gesture script (rendered mode).", read_only=True,
                                min=0.1, max=5.0)
    visible: bool = common.param(True, "false: no hand (empty arrays, or the rendered hand out of view).")


def _pose_array(points: np.ndarray, stamp, frame_id: str) -> PoseArray:
    msg = PoseArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for x, y, z in points:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = float(x), float(y), float(z)
        pose.orientation.w = 1.0
        msg.poses.append(pose)
    return msg


class SimHandNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_hand")
        self.params = common.declare_params(self, Params)
        p = self.params
        description = load_description(p.robot_profile)
        self.frame_id = description.base_frame
        self.gt_pub = self.create_publisher(PoseArray, GT_TOPIC, common.SENSOR_QOS)
        if p.mode == "keypoints":
            self.hand = ScriptedHumanHand(description, p.retarget_config, rate_hz=p.rate_hz,
                                          wrist_amplitude_m=p.wrist_amplitude_m)
            self.pub = self.create_publisher(PoseArray, "dexstack/hand_keypoints", common.SENSOR_QOS)
        else:
            from dexstack.sim.config import load_cell_config
            from dexstack.sim.human_hand import HumanHandKinematics
            from dexstack.transforms import make_transform, rpy_to_matrix

            hand_config = load_cell_config(p.cell).human_hand
            if not hand_config.enabled:
                raise ValueError(f"cell '{p.cell}' has no human hand (human_hand.enabled: false)")
            self.kinematics = HumanHandKinematics(hand_config)
            self.script = GestureScript(make_transform(hand_config.rest_xyz_m, rpy_to_matrix(hand_config.rest_rpy_rad)),
                                        speed=p.speed)
            self.pub = self.create_publisher(JointState, HUMAN_HAND_COMMAND_TOPIC, common.SENSOR_QOS)
        self.start = time.monotonic()
        self.create_timer(1.0 / p.rate_hz, self._tick)
        self.get_logger().info(f"sim_hand up: mode '{p.mode}'")

    def _tick(self) -> None:
        t = time.monotonic() - self.start
        stamp = self.get_clock().now().to_msg()
        if self.params.mode == "keypoints":
            points = self.hand.keypoints_base(t) if self.params.visible else np.zeros((0, 3))
            self.pub.publish(_pose_array(points, stamp, self.frame_id))
            self.gt_pub.publish(_pose_array(points, stamp, self.frame_id))
            return
        from dexstack.sim.human_hand import HumanHandCommand

        T, q, grasp = self.script(t)
        if not self.params.visible:
            T = T.copy()
            T[:3, 3] += OUT_OF_VIEW_OFFSET_M
        names, values = HumanHandCommand(T, q, grasp).encode()
        msg = JointState(name=names, position=values)
        msg.header.stamp = stamp
        msg.header.frame_id = self.frame_id
        self.pub.publish(msg)
        self.gt_pub.publish(_pose_array(self.kinematics.keypoints(T, q), stamp, self.frame_id))


def main(args: list[str] | None = None) -> None:
    common.run_node(SimHandNode, args)


if __name__ == "__main__":
    main()
