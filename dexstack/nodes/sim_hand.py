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

- ``demo``: a scripted human demonstration (``dexstack/demos/human.py``; ``demo`` = lift | push | rotate |
  pick_place | tilt, parameters drawn from ``seed``): the rendered hand reaches the cube where the sim's ground truth
  says it is (the person looks before reaching), grasps it and moves it in view of the scene camera. With
  ``record: true`` it waits until the object's perceived pose (``/dexstack/object_pose``) flows, calls the
  recorder's ``~/start`` before and ``~/stop`` after the demo, and logs ``demo done``.

All modes publish the ground truth on ``/dexstack/sim/hand_keypoints_gt`` (PoseArray, base frame, stamped with
the time the hand was placed there): for evaluation only, never read by controllers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState

from dexstack.demos.human import KINDS as DEMO_KINDS
from dexstack.nodes import common
from dexstack.nodes.sim_operator import HUMAN_HAND_COMMAND_TOPIC
from dexstack.robot.description import load_description
from dexstack.sim.human_hand import HumanHandCommand
from dexstack.teleop import ScriptedHumanHand
from dexstack.teleop.scripted_hand import GestureScript

GT_TOPIC = "/dexstack/sim/hand_keypoints_gt"
OUT_OF_VIEW_OFFSET_M = np.array([0.0, 0.0, -2.0])  # "visible: false" in rendered mode: below the floor


@dataclass
class Params:
    mode: str = common.param("keypoints", "'keypoints': publish keypoints directly (no rendering); 'rendered': "
                             "drive the cell's rendered human hand; 'demo': a scripted human demonstration.",
                             read_only=True, choices=("keypoints", "rendered", "demo"))
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
    demo: str = common.param("lift", "Demo kind (demo mode).", read_only=True, choices=DEMO_KINDS)
    seed: int = common.param(0, "Seed of the demo's parameters (demo mode).", read_only=True, min=0, max=1_000_000)
    pace: float = common.param(1.0, "Demo mode: the demo's speed factor (0.5: twice as slow; perception on this "
                               "machine runs a few Hz).", read_only=True, min=0.25, max=2.0)
    record: bool = common.param(False, "Demo mode: start/stop an episode on the recorder around the demo.",
                                read_only=True)
    recorder: str = common.param("/recorder", "Recorder node whose ~/start and ~/stop the demo calls.",
                                 read_only=True)


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
        elif p.mode == "demo":
            self._init_demo()
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

    def _init_demo(self) -> None:
        from geometry_msgs.msg import PoseStamped
        from std_srvs.srv import Trigger

        from dexstack.demos.human import sample_demo
        from dexstack.sim.config import load_cell_config
        from dexstack.sim.human_hand import HumanHandKinematics
        from dexstack.transforms import make_transform, rpy_to_matrix

        p = self.params
        hand_config = load_cell_config(p.cell).human_hand
        if not hand_config.enabled:
            raise ValueError(f"cell '{p.cell}' has no human hand (human_hand.enabled: false)")
        self.kinematics = HumanHandKinematics(hand_config)
        self.T_rest = make_transform(hand_config.rest_xyz_m, rpy_to_matrix(hand_config.rest_rpy_rad))
        from dataclasses import replace

        self.spec = sample_demo(p.demo, p.seed)
        self.spec = replace(self.spec, speed=self.spec.speed * p.pace)
        self.demo = None  # built once the object is seen
        self.demo_state = "waiting"  # waiting -> starting -> playing -> stopping -> done
        self.object_gt = None
        self.perceived = 0
        self.create_subscription(PoseStamped, "/dexstack/sim/object_pose_gt", self._on_gt, common.STATE_QOS)
        self.create_subscription(PoseStamped, "/dexstack/object_pose", self._on_perceived, common.STATE_QOS)
        self.recorder_clients = {a: self.create_client(Trigger, f"{p.recorder}/{a}") for a in ("start", "stop")}
        self.pub = self.create_publisher(JointState, HUMAN_HAND_COMMAND_TOPIC, common.SENSOR_QOS)
        self.get_logger().info(f"demo '{self.spec.label}': {self.spec}")

    def _on_gt(self, msg) -> None:
        from dexstack.transforms import pose_to_transform

        p, o = msg.pose.position, msg.pose.orientation
        self.object_gt = pose_to_transform((p.x, p.y, p.z), (o.x, o.y, o.z, o.w))

    def _on_perceived(self, msg) -> None:
        self.perceived += 1

    def _call_recorder(self, action: str, then: str) -> None:
        client = self.recorder_clients[action]
        if not client.service_is_ready():
            return
        from std_srvs.srv import Trigger

        self.demo_state = f"calling {action}"
        future = client.call_async(Trigger.Request())

        def done(f) -> None:
            result = f.result()
            if result is None or not result.success:
                self.get_logger().error(f"recorder {action} failed: {getattr(result, 'message', 'no answer')}")
            self.demo_state = then
            if then == "playing":
                self.start = time.monotonic()
            elif then == "done":
                self.get_logger().info(f"demo done: '{self.spec.label}'")

        future.add_done_callback(done)

    def _demo_tick(self, stamp) -> None:
        from dexstack.demos.human import HumanDemo

        p = self.params
        if self.demo is None and self.object_gt is not None:
            self.demo = HumanDemo(self.spec, self.object_gt, self.T_rest)
        if self.demo is None:
            T, q, grasp = self.T_rest, self.kinematics_rest_q(), False
        else:
            if self.demo_state == "waiting" and self.perceived >= 5:  # perception is up and sees the object
                if p.record:
                    self._call_recorder("start", "playing")
                else:
                    self.demo_state, self.start = "playing", time.monotonic()
            t = time.monotonic() - self.start if self.demo_state in ("playing", "calling stop", "done") else 0.0
            if self.demo_state == "playing" and t >= self.demo.duration_s:
                if p.record:
                    self._call_recorder("stop", "done")
                else:
                    self.demo_state = "done"
                    self.get_logger().info(f"demo done: '{self.spec.label}'")
            T, q, grasp = self.demo(min(t, self.demo.duration_s))
        names, values = HumanHandCommand(T, q, grasp).encode()
        msg = JointState(name=names, position=values)
        msg.header.stamp = stamp
        msg.header.frame_id = self.frame_id
        self.pub.publish(msg)
        self.gt_pub.publish(_pose_array(self.kinematics.keypoints(T, q), stamp, self.frame_id))

    @staticmethod
    def kinematics_rest_q():
        from dexstack.sim.human_hand import POSES

        return POSES["relaxed"]

    def _tick(self) -> None:
        if self.params.mode == "demo":
            self._demo_tick(self.get_clock().now().to_msg())
            return
        t = time.monotonic() - self.start
        stamp = self.get_clock().now().to_msg()
        if self.params.mode == "keypoints":
            points = self.hand.keypoints_base(t) if self.params.visible else np.zeros((0, 3))
            self.pub.publish(_pose_array(points, stamp, self.frame_id))
            self.gt_pub.publish(_pose_array(points, stamp, self.frame_id))
            return
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
