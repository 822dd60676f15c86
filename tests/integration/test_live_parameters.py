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
                                f"motion:={motion}", "-p", "wait_for_safety:=false"],  # no monitor in this test
                               env=os.environ, stdout=open(log, "w"),  # noqa: SIM115
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


def test_an_unknown_parameter_is_refused_at_start(tmp_path):
    """A typo in a params file (here `hand_rate_hzz`) stops the node with the known names, not silently ignored."""
    params = tmp_path / "params.yaml"
    params.write_text("scripted_motion:\n  ros__parameters:\n    hand_rate_hzz: 5.0\n")
    result = subprocess.run([sys.executable, "-m", "dexstack.nodes.scripted_motion", "--ros-args", "--params-file",
                             str(params)], env=os.environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown parameter 'hand_rate_hzz' for node 'scripted_motion': known parameters are robot_profile" \
        in result.stderr


def _node_params(executable: str) -> set[str]:
    import dataclasses
    import importlib

    params = importlib.import_module(f"dexstack.nodes.{executable}").Params
    return {f.name for f in dataclasses.fields(params)} | {"use_sim_time"}  # rclpy's own, on every node


def test_shipped_params_files_and_launch_files_name_only_known_parameters():
    """What the strict start-up check would refuse, checked for every shipped file without starting nodes."""
    import xml.etree.ElementTree as ET

    import yaml

    from dexstack.paths import data_path

    checked = 0
    for path in sorted(data_path("config").glob("*.yaml")):
        for node, section in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(section, dict) and "ros__parameters" in section:
                unknown = set(section["ros__parameters"]) - _node_params(node)
                assert not unknown, f"{path.name}: {node} has no parameter(s) {sorted(unknown)}"
                checked += 1
    for path in sorted(data_path("launch").glob("*.launch.xml")):
        for node in ET.parse(path).getroot().iter("node"):
            names = {p.get("name") for p in node.iter("param") if p.get("name")}
            unknown = names - _node_params(node.get("exec"))
            assert not unknown, f"{path.name}: {node.get('exec')} has no parameter(s) {sorted(unknown)}"
            checked += 1
    assert checked > 20


def test_topic_names_are_relative_and_remappable(ros_node, tmp_path):
    """Node code uses relative names: a namespace moves them all, a remap moves one (the ROS 2 way); in the root
    namespace they resolve to the names the graph has always used (/joint_states, /dexstack/hand/command)."""
    motion = tmp_path / "short.yaml"
    motion.write_text(MOTION)
    log = tmp_path / "ns.log"
    process = subprocess.Popen([sys.executable, "-m", "dexstack.nodes.scripted_motion", "--ros-args", "-r",
                                "__ns:=/left", "-r", "dexstack/hand/command:=/left_hand/commands", "-p",
                                f"motion:={motion}", "-p", "wait_for_safety:=false"],
                               env=os.environ, stdout=open(log, "w"),  # noqa: SIM115
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        state = JointState(name=list(D.joints), position=[0.0] * len(D.joints), velocity=[0.0] * len(D.joints),
                           effort=[0.0] * len(D.joints))
        pub = ros_node.create_publisher(JointState, "/left/joint_states", common.STATE_QOS)
        arm, hand = Stamps(), Stamps()
        ros_node.create_subscription(JointTrajectory, "/left/dexstack/arm/command", arm, common.COMMAND_QOS)
        ros_node.create_subscription(Float64MultiArray, "/left_hand/commands", hand, common.COMMAND_QOS)
        timer = ros_node.create_timer(0.02, lambda: pub.publish(state))
        assert wait_for(lambda: len(arm.t) >= 1 and len(hand.t) > 5, 30.0), log.read_text()[-2000:]
        ros_node.destroy_timer(timer)
        topics = dict(ros_node.get_topic_names_and_types())
        assert "/left/joint_states" in topics and "/left_hand/commands" in topics
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, log.read_text()[-2000:]
