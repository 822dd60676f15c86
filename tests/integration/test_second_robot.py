"""Every shipped robot besides the launch files' default (e.g. UR5 + Allegro LEFT, ``ur5_allegro_left``) through the
real graph: ``dexstack-launch sim_teleop cell:=<its cell> robot_profile:=<it>`` (sim_cell, safety monitor, scripted
human hand, teleop in separate processes) moves the arm and the fingers through the safety monitor on the drivers'
topics of that profile; the recorder records it and the LeRobot export has its joints with a moving action; the
policy node runs a bundle made for that profile through the same gate. A cell of another robot than the graph's is
refused by sim_cell with the reason.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dexstack.launch.xml import parse_launch_file
from dexstack.nodes import common
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from dexstack.sim.config import load_cell_config
from tests.integration.test_record_node import read_back, spawn, stop
from tests.profiles import PROFILES, cell_for
from tests.ros_harness import Stream, call_service, dump_logs, start_graph, wait_for

DEFAULT = parse_launch_file("sim_teleop").args["robot_profile"]  # tested by the other integration tests
OTHERS = [p for p in PROFILES if p != DEFAULT]


def _q(msg: JointState, D) -> np.ndarray:
    order = [list(msg.name).index(n) for n in D.joints]
    return np.array(msg.position)[order]


@pytest.fixture(scope="module", params=OTHERS)
def graph(request, rclpy_context, tmp_path_factory):
    profile = request.param
    graph = start_graph("sim_teleop", {"cell": cell_for(profile), "robot_profile": profile, "auto_engage": "true"},
                        tmp_path_factory.mktemp(f"{profile}_logs"))
    graph.profile = profile
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"


def test_teleop_moves_the_robot_through_the_safety_monitor_and_is_recorded(ros_node, graph, tmp_path):
    D = load_description(graph.profile)
    N_ARM = len(D.arm_joints)
    profile = D.profile
    calibration = load_cell_config(cell_for(graph.profile)).calibration
    states, arm_driver, hand_driver = Stream(), Stream(), Stream()
    ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
    ros_node.create_subscription(JointTrajectory, profile.arm.command.topic, arm_driver, common.COMMAND_QOS)
    ros_node.create_subscription(Float64MultiArray, profile.hand.command.topic, hand_driver, common.COMMAND_QOS)
    out = tmp_path / "episodes"
    recorder = spawn("dexstack.nodes.recorder", tmp_path / "recorder.log", "-p", f"output_dir:={out}",
                     "-p", f"robot_profile:={profile.name}", "-p", f"calibration:={calibration}", "-p", "task:=teleop")
    try:
        assert wait_for(lambda: len(arm_driver.items) > 30 and len(hand_driver.items) > 30, 60.0), dump_logs(graph)
        assert wait_for(lambda: ros_node.count_subscribers(profile.arm.command.topic) >= 3, 15.0)  # sim, recorder
        time.sleep(1.0)  # the recorder's discovery (0.5 s) subscribes the graph's topics
        response = call_service(ros_node, Trigger, "/recorder/start", Trigger.Request(), attempts=3, timeout_s=5.0)
        assert response.success or "already recording" in response.message, response.message
        start = len(states.items)
        time.sleep(4.0)
        response = call_service(ros_node, Trigger, "/recorder/stop", Trigger.Request(), attempts=1, timeout_s=15.0)
        assert response.success, response.message
    finally:
        assert stop(recorder) == 0, (tmp_path / "recorder.log").read_text()[-3000:]

    # The robot moved: the palm follows the scripted human wrist (a 6 cm ellipse), the fingers the scripted fingers.
    kin = Kinematics(D)
    window = [_q(m, D) for _, m in states.items[start::25]]
    palms = np.array([kin.frame_pose(q, profile.hand.palm_link)[:3, 3] for q in window])
    assert np.ptp(palms[:, :2], axis=0).max() > 0.02, palms
    assert np.ptp(np.array(window)[:, N_ARM:], axis=0).max() > 0.2  # finger joints (rad)
    # ... through the gate: the arm driver got the UR5's joints, and the robot tracks what the gate sent
    assert list(arm_driver.items[-1][1].joint_names) == list(D.arm_joints)
    assert len(hand_driver.items[-1][1].data) == len(D.hand_joints)
    errors = []
    for t, msg in states.items[start::25]:
        sent = [m for tm, m in arm_driver.items if tm <= t - 0.1]
        if sent:
            errors.append(np.abs(_q(msg, D)[:N_ARM] - np.array(sent[-1].points[-1].positions)).max())
    assert len(errors) > 10 and np.median(errors) < 0.03, errors

    # Recorded with this profile's joints and driver topics, exported with a moving action.
    episode = out / "episode_000000"
    msgs = read_back(episode)
    assert len(msgs[profile.arm.command.topic]) > 100 and len(msgs[profile.hand.command.topic]) > 100
    default_topic = load_description(DEFAULT).profile.arm.command.topic
    assert default_topic == profile.arm.command.topic or default_topic not in msgs
    assert list(msgs["/joint_states"][-1][1].name) == list(D.joints)
    from dexstack.record.export import ExportConfig, export_lerobot

    dataset = tmp_path / "dataset"
    report = export_lerobot(out, dataset, ExportConfig(fps=10, cameras={}))
    assert report.total_frames > 20
    import pyarrow.parquet as pq

    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["features"]["observation.state"]["names"] == list(D.joints)
    action = np.array(pq.read_table(dataset / "data/chunk-000/file-000.parquet").column("action").to_pylist())
    assert action.shape[1] == len(D.joints) and np.ptp(action[:, :N_ARM], axis=0).max() > 0.02  # not state-held


def test_a_policy_bundle_made_for_the_robot_drives_it_through_the_safety_monitor(ros_node, graph, tmp_path):
    """The policy node on this profile: a replay bundle made for it (a 3 s ramp of the first arm joint) moves the
    arm there, teleop paused; the shipped bundles (made for the default robot) are refused (unit-tested)."""
    from std_srvs.srv import SetBool

    from dexstack.policies import ReferenceTrajectory, save_reference
    from dexstack.policies.manifest import write_manifest

    D = load_description(graph.profile)
    N_ARM = len(D.arm_joints)
    assert call_service(ros_node, SetBool, "/teleop/pause", SetBool.Request(data=True)).success
    t = np.linspace(0.0, 3.0, 31)
    q_ref = np.tile(D.home(), (t.size, 1))
    q_ref[:, 0] += 0.3 * t / t[-1]
    bundle = tmp_path / "ramp"
    save_reference(ReferenceTrajectory(times_s=t, q_rad=q_ref, name="ramp", kind="test", robot_profile=D.profile.name),
                   D.joints, bundle / "ref.npz")
    write_manifest({"name": "ramp", "type": "replay", "robot_profile": D.profile.name, "control_rate_hz": 20.0,
                    "reference": "ref.npz"}, bundle)
    states = Stream()
    ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
    policy = spawn("dexstack.nodes.policy", tmp_path / "policy.log", "-p", f"robot_profile:={D.profile.name}",
                   "-p", f"policy:={bundle}")
    try:
        def at_ramp_end() -> bool:
            return bool(states.items) and abs(_q(states.items[-1][1], D)[0] - q_ref[-1, 0]) < 0.01

        assert wait_for(at_ramp_end, 40.0), (tmp_path / "policy.log").read_text()[-3000:]
        time.sleep(0.5)
        q = _q(states.items[-1][1], D)
        np.testing.assert_allclose(q[:N_ARM], q_ref[-1, :N_ARM], atol=0.02)  # the whole arm where the bundle says
    finally:
        assert stop(policy) == 0, (tmp_path / "policy.log").read_text()[-3000:]
        call_service(ros_node, SetBool, "/teleop/pause", SetBool.Request(data=False))


@pytest.mark.parametrize("profile", OTHERS)
def test_a_cell_of_another_robot_is_refused_with_the_reason(rclpy_context, tmp_path, profile):
    cell = cell_for(profile)
    bad = start_graph("sim_cell", {"cell": cell, "robot_profile": DEFAULT}, tmp_path)
    try:
        sim = next(n for n in bad.nodes if n.name == "sim_cell")
        assert wait_for(lambda: "sim_cell" in bad.failed(), 30.0), dump_logs(bad)
        assert sim.process.returncode == 2  # a setup error: its message, no traceback
        log = sim.log_path.read_text()
        assert f"cell '{cell}' carries robot profile '{profile}', but this graph runs '{DEFAULT}'" in log, log
    finally:
        bad.stop()
