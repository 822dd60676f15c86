"""Sim-cell end to end: scripted hand -> teleop -> safety monitor -> sim robot, in separate processes."""

import time

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from dexstack.nodes import common
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from tests.ros_harness import Stream, call_service, dump_logs, start_graph, wait_for

D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)


@pytest.fixture(scope="module")
def teleop_graph(rclpy_context, tmp_path_factory):
    graph = start_graph("sim_teleop", {"auto_engage": "true"}, tmp_path_factory.mktemp("teleop_logs"))
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"


def _q(msg: JointState) -> np.ndarray:
    order = [list(msg.name).index(n) for n in D.joints]
    return np.array(msg.position)[order]


def test_robot_follows_the_scripted_hand_through_the_safety_monitor(ros_node, teleop_graph):
    states, commands, driver = Stream(), Stream(), Stream()
    ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
    ros_node.create_subscription(JointTrajectory, "/dexstack/arm/command", commands, common.COMMAND_QOS)
    ros_node.create_subscription(Float64MultiArray, "/hand_controller/commands", driver, common.COMMAND_QOS)
    assert wait_for(lambda: len(commands.items) > 30 and len(driver.items) > 30, 60.0), dump_logs(teleop_graph)
    start = len(states.items)
    time.sleep(4.0)
    kin = Kinematics(D)
    palms = np.array([kin.frame_pose(_q(m), "palm_link")[:3, 3] for _, m in states.items[start::25]])
    assert np.ptp(palms[:, :2], axis=0).max() > 0.02  # the palm moves with the human wrist (6 cm ellipse)
    # Tracking: the measured arm is close to the latest teleop command (slow wrist motion, small filter lag).
    errors = []
    for t, msg in states.items[start::25]:
        previous = [c for tc, c in commands.items if tc <= t - 0.15]
        if previous:
            errors.append(np.abs(_q(msg)[:N_ARM] - np.array(previous[-1].points[0].positions)).max())
    assert len(errors) > 10 and np.median(errors) < 0.03, errors


def test_losing_the_hand_holds_the_robot(ros_node, teleop_graph):
    states, driver = Stream(), Stream()
    ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
    ros_node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", driver, common.COMMAND_QOS)
    assert wait_for(lambda: len(driver.items) > 10 and len(states.items) > 10, 30.0)
    request = SetParameters.Request(parameters=[Parameter(
        name="visible", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False))])
    assert call_service(ros_node, SetParameters, "/sim_hand/set_parameters", request).results[0].successful
    hidden = time.monotonic()
    time.sleep(1.5)
    # hand_lost_timeout (0.3 s) + the gate's command timeout (0.1 s) + margin: then nothing reaches the driver
    late = [t for t, _ in driver.items if t > hidden + 0.6]
    assert not late, f"{len(late)} driver commands after the hand was lost"
    q1 = _q(states.items[-1][1])
    time.sleep(0.3)
    np.testing.assert_allclose(_q(states.items[-1][1]), q1, atol=2e-3)
    # Disengaging by service also holds; the hand comes back: auto_engage resumes without a jump.
    response = call_service(ros_node, SetBool, "/teleop/engage", SetBool.Request(data=False))
    assert response.success
    request.parameters[0].value.bool_value = True
    assert call_service(ros_node, SetParameters, "/sim_hand/set_parameters", request).results[0].successful
    assert wait_for(lambda: driver.items[-1][0] > time.monotonic() - 0.2, 5.0)


def _set(ros_node, node: str, name: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
    return call_service(ros_node, SetParameters, f"/{node}/set_parameters", request).results[0]


def _bool(flag: bool) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=flag)


def _double(value: float) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)


def test_hand_lost_timeout_and_auto_engage_apply_live(ros_node, teleop_graph):
    """Both teleop parameters change the running controller: a long hand-lost timeout keeps teleop engaged through
    a short gap; with auto_engage off a lost hand stays disengaged until auto_engage is set again."""
    commands = Stream()
    ros_node.create_subscription(JointTrajectory, "/dexstack/arm/command", commands, common.COMMAND_QOS)
    assert wait_for(lambda: commands.items and commands.items[-1][0] > time.monotonic() - 0.2, 10.0)

    def flowing(within_s: float) -> bool:
        return wait_for(lambda: bool(commands.items) and commands.items[-1][0] > time.monotonic() - 0.1, within_s)

    def gap(seconds: float) -> None:
        assert _set(ros_node, "sim_hand", "visible", _bool(False)).successful
        time.sleep(seconds)
        assert _set(ros_node, "sim_hand", "visible", _bool(True)).successful

    try:
        assert _set(ros_node, "teleop", "auto_engage", _bool(False)).successful
        assert _set(ros_node, "teleop", "hand_lost_timeout_s", _double(5.0)).successful
        gap(1.0)  # shorter than the new timeout: still engaged, commands resume without an engage
        assert flowing(2.0), "teleop disengaged although hand_lost_timeout_s was raised to 5 s"
        assert _set(ros_node, "teleop", "hand_lost_timeout_s", _double(0.3)).successful
        gap(1.0)  # longer than the timeout: disengaged, and auto_engage is off
        time.sleep(0.5)
        assert not flowing(1.0), "teleop re-engaged by itself although auto_engage was set false"
        assert _set(ros_node, "teleop", "auto_engage", _bool(True)).successful
        assert flowing(3.0), "setting auto_engage true did not re-engage"
    finally:
        _set(ros_node, "teleop", "auto_engage", _bool(True))
        _set(ros_node, "teleop", "hand_lost_timeout_s", _double(0.3))
        _set(ros_node, "sim_hand", "visible", _bool(True))
