"""Visual teleoperation end to end, as launched (sim_visual_teleop): the rendered human hand -> operator camera ->
hand_pose (MediaPipe + depth) -> teleop -> safety monitor -> sim robot, in separate processes over DDS. The driver
command carries the camera frame's stamp; the hand leaving the view holds the robot with a reason on /diagnostics,
and tracking resumes without a jump when it comes back."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from dexstack.nodes import common
from dexstack.nodes.safety_monitor import HAND_OUTPUT_STAMPED
from dexstack.robot import load_description
from tests.ros_harness import Stream, call_service, dump_logs, start_graph, wait_for

pytest.importorskip("mediapipe")
D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _visible(node, value: bool) -> bool:
    request = SetParameters.Request(parameters=[Parameter(
        name="visible", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))])
    return call_service(node, SetParameters, "/sim_hand/set_parameters", request).results[0].successful


def test_robot_follows_the_rendered_hand_through_perception_and_holds_when_it_leaves(
        ros_node, rclpy_context, tmp_path_factory):
    graph = start_graph("sim_visual_teleop", {"auto_engage": "true", "speed": "1.5"},
                        tmp_path_factory.mktemp("visual_teleop_logs"))
    try:
        keypoints, driver, states, diag, hand_driver = Stream(), Stream(), Stream(), {}, Stream()
        ros_node.create_subscription(PoseArray, "/dexstack/hand_keypoints", keypoints, common.STATE_QOS)
        ros_node.create_subscription(JointTrajectory, D.profile.arm.command.topic, driver, common.COMMAND_QOS)
        ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
        ros_node.create_subscription(JointState, HAND_OUTPUT_STAMPED, hand_driver, common.COMMAND_QOS)

        def on_diag(msg):
            for s in msg.status:
                diag[s.name] = s.message
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

        # 1. The robot follows the hand the camera sees, and each driver command names its camera frame.
        traced = lambda: {_ns(m.header.stamp) for _, m in driver.items} & {  # noqa: E731
            _ns(m.header.stamp) for _, m in keypoints.items if len(m.poses) == 21}
        assert wait_for(lambda: len(traced()) > 15, 90.0), dump_logs(graph)
        # ... the hand driver commands too (their stamped mirror: teleop's hand_command_stamped is on).
        assert wait_for(lambda: len({_ns(m.header.stamp) for _, m in hand_driver.items} & {
            _ns(m.header.stamp) for _, m in keypoints.items if len(m.poses) == 21}) > 15, 10.0)
        mirrored = {_ns(m.header.stamp) for _, m in list(hand_driver.items)} - {0}
        time.sleep(0.5)  # the keypoints of those frames may be queued behind them in this process
        # Camera stamps, not the time of sending: most are the stamp of a keypoint message. This process
        # takes the keypoints best-effort and may miss a few on a busy machine, so not all of them must be seen here;
        # a command stamped with its send time would match none.
        seen = {_ns(m.header.stamp) for _, m in keypoints.items}
        assert len(mirrored & seen) >= 0.5 * len(mirrored), (len(mirrored & seen), len(mirrored))

        def arm_moved() -> float:
            q_arm = np.array([m.points[0].positions for _, m in list(driver.items)])
            return float(np.ptp(q_arm, axis=0).max())
        assert wait_for(lambda: arm_moved() > 0.02, 30.0), arm_moved()  # the arm moves with the human wrist

        # 2. The hand leaves the view: no hand published, the driver stops getting commands, a reason is given.
        assert _visible(ros_node, False)
        hidden = time.monotonic()
        assert wait_for(lambda: "hand lost" in diag.get("teleop", ""), 10.0), diag
        assert wait_for(lambda: diag.get("hand_pose", "") == "no hand", 10.0), diag
        time.sleep(0.5)
        late = [t for t, _ in driver.items if t > hidden + 1.5]
        assert not late, f"{len(late)} driver commands after the hand left the view"
        q_held = np.array(driver.items[-1][1].points[0].positions)

        # 3. It comes back: tracking resumes from where the robot is (auto-engage re-references: no jump).
        assert _visible(ros_node, True)
        back = time.monotonic()
        assert wait_for(lambda: any(t > back for t, _ in driver.items), 30.0), diag
        first = next(m for t, m in driver.items if t > back)
        assert np.abs(np.array(first.points[0].positions) - q_held).max() < 0.02
    finally:
        codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"
