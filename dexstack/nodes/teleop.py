"""teleop: hand keypoints -> retargeting + arm IK -> commands into the safety monitor's inputs.

Subscribes ``/dexstack/hand_keypoints`` (geometry_msgs/PoseArray, 21 MANO-order points in the robot base frame;
an empty array means "no hand") and ``/joint_states``; publishes ``/dexstack/arm/command`` (JointTrajectory, one
point, stamped with the keypoints' stamp) and ``/dexstack/hand/command`` (Float64MultiArray), or with
``hand_command_stamped`` ``/dexstack/hand/command_stamped`` (sensor_msgs/JointState, hand joint names, the keypoints'
stamp: the safety monitor carries it to its driver command, so hand latency is traced too). Services:
``~/engage`` (std_srvs/SetBool: clutch in/out), ``~/recenter`` (std_srvs/Trigger), ``~/pause`` (std_srvs/SetBool).
Works the same on the sim cell (keypoints from ``sim_hand``) and on the robot (keypoints from ``hand_pose``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.control.joint_state import JointStateCache
from dexstack.diagnostics import Level, ReasonCounter, StatusReport
from dexstack.nodes import common
from dexstack.nodes.safety_link import SafetyLink
from dexstack.robot.description import load_description
from dexstack.teleop import TeleopConfig, TeleopController
from dexstack.teleop.controller import KeypointError

KEYPOINTS_TOPIC = "dexstack/hand_keypoints"


@dataclass
class Params:
    robot_profile: str = common.param("panda_allegro", "Robot profile.", read_only=True)
    retarget_config: str = common.param("", "Retargeting config (config/retarget/<name>.yaml); '': the one made "
                                            "for robot_profile.",
                                        read_only=True)
    method: str = common.param("dexpilot", "Retargeting method.", read_only=True,
                               choices=("vector", "position", "dexpilot"))
    position_scale: float = common.param(1.0, "Robot palm motion per metre of human wrist motion.", read_only=True,
                                         min=0.1, max=5.0)
    hand_lost_timeout_s: float = common.param(0.3, "No hand for this long: stop commanding (the robot holds).",
                                              min=0.05, max=5.0)
    auto_engage: bool = common.param(False, "Engage as soon as a hand is seen (and after it was lost).")
    command_horizon_s: float = common.param(0.05, "time_from_start of each arm command.", min=0.005, max=1.0)
    state_timeout_s: float = common.param(0.5, "/joint_states older than this: no commands.", min=0.01, max=5.0)
    wait_for_safety: bool = common.param(True, "Send only while the safety monitor reports ready.", read_only=True)
    hand_command_stamped: bool = common.param(
        False, "Send hand targets as a stamped JointState on dexstack/hand/command_stamped (the keypoints' stamp, "
        "for latency tracing) instead of a Float64MultiArray on dexstack/hand/command.", read_only=True)


class TeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        self.params = common.declare_params(self, Params, on_change=self._on_param)
        self.description = load_description(self.params.robot_profile)
        self.controller = TeleopController(self.description, TeleopConfig(
            retarget_config=self.params.retarget_config, method=self.params.method,
            position_scale=self.params.position_scale, hand_lost_timeout_s=self.params.hand_lost_timeout_s,
            auto_engage=self.params.auto_engage))
        self.state = JointStateCache(self.description.joints)
        self.rejected = ReasonCounter()
        self.commands_sent = 0
        self.arm_pub = self.create_publisher(JointTrajectory, "dexstack/arm/command", common.COMMAND_QOS)
        if self.params.hand_command_stamped:
            self.hand_pub = self.create_publisher(JointState, "dexstack/hand/command_stamped", common.COMMAND_QOS)
        else:
            self.hand_pub = self.create_publisher(Float64MultiArray, "dexstack/hand/command", common.COMMAND_QOS)
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, "joint_states", self._on_state, common.STATE_QOS)
        self.create_subscription(PoseArray, KEYPOINTS_TOPIC, self._on_keypoints, common.SENSOR_QOS)
        self.safety = SafetyLink(self) if self.params.wait_for_safety else None
        self.create_service(SetBool, "~/engage", self._on_engage)
        self.create_service(Trigger, "~/recenter", self._on_recenter)
        self.create_service(SetBool, "~/pause", self._on_pause)
        self.create_timer(0.05, self._check_lost)
        self.create_timer(1.0, self._publish_diagnostics)

    def _on_param(self, name: str, value) -> None:
        if name in ("hand_lost_timeout_s", "auto_engage"):  # the controller reads them on every step
            setattr(self.controller.config, name, value)

    def _q_meas(self) -> np.ndarray | None:
        return self.state.positions(time.monotonic(), self.params.state_timeout_s)

    def _on_state(self, msg: JointState) -> None:
        self.state.update(msg.name, msg.position, time.monotonic())

    def _on_keypoints(self, msg: PoseArray) -> None:
        if len(msg.poses) == 0:
            return  # "no hand": the lost-hand timer decides when to stop
        q = self._q_meas()
        if q is None:
            self.rejected.add("no fresh /joint_states")
            return
        if self.safety is not None and not self.safety.ready:
            self.rejected.add("safety monitor not ready")
            return
        if len(msg.poses) != 21:
            self.rejected.add(f"hand keypoints: expected 21 poses, got {len(msg.poses)}")
            return
        kp = common.points_from_pose_array(msg)
        try:
            command = self.controller.step(kp, q, time.monotonic())
        except KeypointError as exc:
            self.rejected.add(f"hand keypoints: {exc}")
            self.get_logger().warning(f"ignoring keypoints: {exc}", throttle_duration_sec=1.0)
            return
        if command is None:
            return
        point = JointTrajectoryPoint(positions=command.arm_rad.tolist())
        point.time_from_start.nanosec = int(self.params.command_horizon_s * 1e9)
        traj = JointTrajectory(joint_names=list(self.description.arm_joints), points=[point])
        traj.header.stamp = msg.header.stamp  # the camera frame this command comes from (latency tracing)
        self.arm_pub.publish(traj)
        if self.params.hand_command_stamped:
            hand = JointState(name=list(self.description.hand_joints), position=command.hand_rad.tolist())
            hand.header.stamp = msg.header.stamp
            self.hand_pub.publish(hand)
        else:
            self.hand_pub.publish(Float64MultiArray(data=command.hand_rad.tolist()))
        self.commands_sent += 1

    def _check_lost(self) -> None:
        was_engaged = self.controller.engaged
        if self.controller.check_hand_lost(time.monotonic()) and was_engaged:
            self.get_logger().warning(self.controller.last_reason)

    def _on_engage(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not request.data:
            self.controller.disengage("disengaged by request")
            response.success, response.message = True, "disengaged: the robot holds"
            return response
        q = self._q_meas()
        if q is None:
            response.success, response.message = False, "no fresh /joint_states"
            return response
        response.success, response.message = self.controller.engage(q)
        return response

    def _on_recenter(self, _request, response: Trigger.Response) -> Trigger.Response:
        q = self._q_meas()
        if q is None:
            response.success, response.message = False, "no fresh /joint_states"
        else:
            response.success, response.message = self.controller.engage(q)
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.controller.set_paused(request.data)
        response.success = True
        response.message = "paused" if request.data else "resumed: engage to follow again"
        return response

    def _publish_diagnostics(self) -> None:
        c = self.controller
        if c.paused:
            level, message = Level.OK, "paused"
        elif c.engaged:
            level, message = Level.OK, "engaged: following the hand"
        else:
            level, message = Level.WARN, f"not engaged ({c.last_reason or 'call ~/engage'})"
        values = {"engaged": str(c.engaged), "paused": str(c.paused), "commands_sent": str(self.commands_sent),
                  "rejected_total": str(self.rejected.total),
                  **{f"rejected[{k}]": str(v) for k, v in self.rejected.counts().items()}}
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("teleop", level, message, values)]))


def main(args: list[str] | None = None) -> None:
    common.run_node(TeleopNode, args)


if __name__ == "__main__":
    main()
