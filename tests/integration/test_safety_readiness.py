"""Start-up without lost commands, with real processes over DDS: the safety monitor reports readiness and every
refusal; scripted_motion waits for readiness and sends a refused plan again."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexstack.launch.runner import LaunchedGraph
from dexstack.launch.xml import parse_launch_file
from dexstack.nodes import common
from dexstack.nodes.safety_link import READY_TOPIC, REJECTED_TOPIC, rejection_values
from dexstack.robot import load_description
from tests.ros_harness import call_service, dump_logs, wait_for

D = load_description("panda_allegro")

# The monitor alone (the test plays the robot: it publishes /joint_states when it wants the monitor to be ready) and
# a scripted motion (which the test answers as a monitor would, to refuse its first plan).
LAUNCH = """<launch>
  <set_env name="ROS_AUTOMATIC_DISCOVERY_RANGE" value="LOCALHOST"/>
  <node pkg="dexstack" exec="safety_monitor" name="safety_monitor"/>
  <node pkg="dexstack" exec="scripted_motion" name="scripted_motion">
    <remap from="dexstack/arm/command" to="/test_readiness/arm"/>
    <remap from="dexstack/hand/command" to="/test_readiness/hand"/>
  </node>
</launch>
"""


class Recorder(list):
    def __call__(self, msg):
        self.append((time.monotonic(), msg))


@pytest.fixture(scope="module")
def graph(rclpy_context, tmp_path_factory):
    folder = tmp_path_factory.mktemp("readiness")
    (folder / "readiness.launch.xml").write_text(LAUNCH)
    g = LaunchedGraph(parse_launch_file(str(folder / "readiness.launch.xml")), log_dir=folder / "logs").start()
    yield g
    codes = g.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(g)}"


def joint_state() -> JointState:
    return JointState(name=list(D.joints), position=D.home().tolist())


def test_monitor_reports_readiness_and_refusals_to_the_sender(graph, ros_node):
    ready, rejected = Recorder(), Recorder()
    ros_node.create_subscription(Bool, READY_TOPIC, ready, common.LATCHED_QOS)
    ros_node.create_subscription(DiagnosticStatus, REJECTED_TOPIC, rejected, common.COMMAND_QOS)
    arm_in = ros_node.create_publisher(JointTrajectory, "/dexstack/arm/command", common.COMMAND_QOS)
    states = ros_node.create_publisher(JointState, "/joint_states", common.STATE_QOS)
    assert wait_for(lambda: ready and arm_in.get_subscription_count() > 0, 30.0), dump_logs(graph)
    assert ready[-1][1].data is False  # no /joint_states yet
    answer = call_service(ros_node, Trigger, "/safety_monitor/ready", Trigger.Request())
    assert not answer.success and "no complete /joint_states" in answer.message

    # A plan sent now is refused, and the refusal names the plan (its header) instead of vanishing.
    plan = JointTrajectory(joint_names=list(D.arm_joints))
    plan.header.frame_id, plan.header.stamp.sec = "test_plan", 42
    for t in (1, 2):
        plan.points.append(JointTrajectoryPoint(positions=D.home(D.arm_joints).tolist()))
        plan.points[-1].time_from_start.sec = t
    arm_in.publish(plan)
    assert wait_for(lambda: rejected, 5.0)
    values = rejection_values(rejected[-1][1])
    assert values["part"] == "arm" and values["frame_id"] == "test_plan" and values["points"] == "2"
    assert values["stamp_ns"] == str(42 * 10**9) and "no /joint_states" in rejected[-1][1].message

    # Fresh state: ready (latched for late joiners), and the service agrees.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        states.publish(joint_state())
        time.sleep(0.01)
    assert ready[-1][1].data is True
    late = Recorder()
    ros_node.create_subscription(Bool, READY_TOPIC, late, common.LATCHED_QOS)
    assert wait_for(lambda: late, 3.0) and late[0][1].data is True
    answer = call_service(ros_node, Trigger, "/safety_monitor/ready", Trigger.Request())
    assert answer.success, answer.message
    # State stops: not ready any more.
    assert wait_for(lambda: ready[-1][1].data is False, 3.0)


def test_scripted_motion_waits_for_readiness_and_resends_a_refused_plan(graph, ros_node):
    # (The first test leaves scripted_motion unstarted: nobody subscribed to its arm output until now.)
    plans = Recorder()
    ros_node.create_subscription(JointTrajectory, "/test_readiness/arm", plans, common.COMMAND_QOS)
    states = ros_node.create_publisher(JointState, "/joint_states", common.STATE_QOS)
    rejected = ros_node.create_publisher(DiagnosticStatus, REJECTED_TOPIC, common.COMMAND_QOS)

    def stream_until(predicate, timeout_s, msg):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not predicate():
            states.publish(msg)
            time.sleep(0.01)
        return predicate()

    # /joint_states with the arm only: scripted_motion sees "the drivers are up", the real monitor still lacks the
    # hand joints and says "not ready": the motion must not start.
    arm_only = JointState(name=list(D.arm_joints), position=D.home(D.arm_joints).tolist())
    assert wait_for(lambda: rejected.get_subscription_count() > 0, 10.0)
    assert not stream_until(lambda: bool(plans), 2.0, arm_only), "plan sent before the safety monitor was ready"
    # Complete state: the monitor becomes ready and the plan goes out.
    assert stream_until(lambda: bool(plans), 10.0, joint_state()), dump_logs(graph)
    first = plans[-1][1]
    assert first.header.frame_id == "scripted_motion" and len(first.points) > 1
    # Refuse it as the monitor would: the motion starts over (a second, newer plan); it is not lost.
    values = {"part": "arm", "frame_id": "scripted_motion", "stamp_ns": str(common.stamp_to_ns(first.header.stamp))}
    status = DiagnosticStatus(level=DiagnosticStatus.ERROR, name="safety_monitor/arm", message="test refusal",
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    rejected.publish(status)
    assert stream_until(lambda: len(plans) >= 2, 10.0, joint_state()), dump_logs(graph)
    assert common.stamp_to_ns(plans[-1][1].header.stamp) > common.stamp_to_ns(first.header.stamp)
