"""dexstack-grasp-target --topics and the grasp_target node, each in its own process beside sim_cell (tabletop_grasp
cell, over DDS): the frame arrives over the camera topics and goes through the hand and object cores; with the human
hand out of view both refuse with the cause (CLI: exit code 2; node: success false, nothing published); with no
camera on the domain the CLI says so; an unknown object is refused as a parameter, the old one kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from std_srvs.srv import Trigger

from dexstack.nodes import common
from tests.ros_harness import call_service, dump_logs


@pytest.fixture(scope="module")
def grasp_cell(rclpy_context, tmp_path_factory):
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import NodeAction, parse_launch_file

    description = parse_launch_file("sim_cell", {"cell": "tabletop_grasp"})
    description.nodes = [n for n in description.nodes if n.name == "sim_cell"]
    description.nodes.append(NodeAction("dexstack", "grasp_target", "grasp_target", params={"object": "can"}))
    graph = LaunchedGraph(description, log_dir=tmp_path_factory.mktemp("grasp_cell_logs")).start()
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"nodes did not exit cleanly: {codes}\n{dump_logs(graph)}"


def _cli(*args: str, domain: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if domain is not None:
        env["ROS_DOMAIN_ID"] = domain
    return subprocess.run([sys.executable, "-m", "dexstack.cli.grasp_target", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_frame_from_the_topics_without_a_hand_is_refused(grasp_cell):
    result = _cli("--object", "can", "--topics", "--timeout-s", "30")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no hand in the frame" in result.stderr
    assert result.stdout.strip() == ""  # no target printed


def test_no_camera_on_the_domain_is_reported(grasp_cell):
    other = str((int(os.environ.get("ROS_DOMAIN_ID", "0")) + 50) % 101)
    result = _cli("--object", "can", "--topics", "--timeout-s", "2", domain=other)
    assert result.returncode == 2 and "no RGB-D frame on" in result.stderr


def _set(node, name: str, value: str):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value=value))])
    return call_service(node, SetParameters, "/grasp_target/set_parameters", request).results[0]


def test_the_node_refuses_a_frame_without_a_hand_and_publishes_nothing(grasp_cell, ros_node):
    received = []
    ros_node.create_subscription(PoseStamped, "/dexstack/grasp/palm_pose", received.append, common.LATCHED_QOS)
    response = None
    for _ in range(20):  # until the node has a frame
        response = call_service(ros_node, Trigger, "/grasp_target/compute", Trigger.Request(), timeout_s=20.0)
        if "no RGB-D frame received yet" not in response.message:
            break
        time.sleep(0.5)
    assert not response.success and "no hand in the frame" in response.message
    time.sleep(0.5)
    assert received == []
    refused = _set(ros_node, "object", "mug")
    assert not refused.successful and "known objects are" in refused.reason and "'bottle'" in refused.reason
    assert _set(ros_node, "object", "bottle").successful
    # verify rebuilds the pipeline with the simulated check (it is never reached without a hand)
    request = SetParameters.Request(parameters=[Parameter(name="verify", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=True))])
    assert call_service(ros_node, SetParameters, "/grasp_target/set_parameters", request).results[0].successful
    response = call_service(ros_node, Trigger, "/grasp_target/compute", Trigger.Request(), timeout_s=60.0)
    assert not response.success and "no hand in the frame" in response.message
