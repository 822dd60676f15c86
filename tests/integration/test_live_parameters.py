"""Writable parameters change the running node (``ros2 param set`` must not succeed and do nothing): the
scripted_motion node in its own process, fed /joint_states by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from dexstack.nodes import common
from dexstack.robot import load_description
from tests.ros_harness import call_service, wait_for

D = load_description("panda_allegro")
MOTION = "keyframes:\n  - t: 0.0\n  - t: 0.6\n    arm_rad: {panda_joint1: 0.2}\n    hand_rad: {joint_1.0: 0.5}\n"


class Stamps:
    def __init__(self):
        self.t: list[float] = []

    def __call__(self, _msg):
        self.t.append(time.monotonic())

    def rate_over(self, seconds: float) -> float:
        start = len(self.t)
        time.sleep(seconds)
        return (len(self.t) - start) / seconds


def _set(node, name: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
    return call_service(node, SetParameters, "/scripted_motion/set_parameters", request).results[0]


@pytest.fixture
def scripted_motion(ros_node, tmp_path):
    motion = tmp_path / "short.yaml"
    motion.write_text(MOTION)
    log = tmp_path / "scripted.log"
    process = subprocess.Popen([sys.executable, "-m", "dexstack.nodes.scripted_motion", "--ros-args", "-p",
                                f"motion:={motion}"], env=os.environ, stdout=open(log, "w"),  # noqa: SIM115
                               stderr=subprocess.STDOUT, start_new_session=True)
    state = JointState(name=list(D.joints), position=[0.0] * len(D.joints), velocity=[0.0] * len(D.joints),
                       effort=[0.0] * len(D.joints))
    pub = ros_node.create_publisher(JointState, "/joint_states", common.STATE_QOS)
    timer = ros_node.create_timer(0.02, lambda: pub.publish(state))
    yield process, log
    ros_node.destroy_timer(timer)
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=15) == 0, log.read_text()[-2000:]
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_scripted_motion_hand_rate_and_repeat_apply_live(ros_node, scripted_motion):
    _process, log = scripted_motion
    hand, arm = Stamps(), Stamps()
    ros_node.create_subscription(Float64MultiArray, "/dexstack/hand/command", hand, common.COMMAND_QOS)
    ros_node.create_subscription(JointTrajectory, "/dexstack/arm/command", arm, common.COMMAND_QOS)
    assert wait_for(lambda: len(hand.t) > 10, 30.0), log.read_text()[-2000:]
    assert hand.rate_over(1.0) == pytest.approx(50.0, rel=0.25)
    assert _set(ros_node, "hand_rate_hz", ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                         double_value=10.0)).successful
    time.sleep(0.2)
    assert hand.rate_over(1.5) == pytest.approx(10.0, rel=0.3)
    # repeat: the motion (0.6 s) starts over, sending its arm trajectory again
    sent = len(arm.t)
    assert sent == 1
    assert _set(ros_node, "repeat", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True)).successful
    assert wait_for(lambda: len(arm.t) >= sent + 2, 5.0), arm.t
    read_only = _set(ros_node, "start_delay_s", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.0))
    assert not read_only.successful and "read-only" in read_only.reason
