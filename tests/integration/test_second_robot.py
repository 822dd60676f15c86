"""The second shipped robot (UR5 + Allegro LEFT, ``config/robots/ur5_allegro_left.yaml``) through the real graph:
``dexstack-launch sim_teleop cell:=tabletop_ur5_allegro_left robot_profile:=ur5_allegro_left`` (sim_cell, safety
monitor, scripted left hand, teleop in separate processes) moves the arm and the fingers through the safety monitor
on the drivers' topics of that profile; the recorder records it and the LeRobot export has the UR5's joints with a
moving action. A cell of another robot than the graph's is refused by sim_cell with the reason.
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

from dexstack.nodes import common
from dexstack.robot import load_description
from dexstack.robot.kinematics import Kinematics
from tests.integration.test_record_node import read_back, spawn, stop
from tests.ros_harness import call_service, dump_logs, start_graph, wait_for

PROFILE = "ur5_allegro_left"
CELL = "tabletop_ur5_allegro_left"
D = load_description(PROFILE)
N_ARM = len(D.arm_joints)


class Stream:
    def __init__(self):
        self.items = []

    def __call__(self, msg):
        self.items.append((time.monotonic(), msg))


def _q(msg: JointState) -> np.ndarray:
    order = [list(msg.name).index(n) for n in D.joints]
    return np.array(msg.position)[order]


@pytest.fixture(scope="module")
def graph(rclpy_context, tmp_path_factory):
    graph = start_graph("sim_teleop", {"cell": CELL, "robot_profile": PROFILE, "auto_engage": "true"},
                        tmp_path_factory.mktemp("second_robot_logs"))
    yield graph
    codes = graph.stop()
    assert all(c == 0 for c in codes.values()), f"{codes}\n{dump_logs(graph)}"


def test_teleop_moves_the_second_robot_through_the_safety_monitor_and_is_recorded(ros_node, graph, tmp_path):
    profile = D.profile
    assert (N_ARM, len(D.hand_joints)) == (6, 16) and profile.arm.command.topic != "/arm_controller/joint_trajectory"
    states, arm_driver, hand_driver = Stream(), Stream(), Stream()
    ros_node.create_subscription(JointState, "/joint_states", states, common.STATE_QOS)
    ros_node.create_subscription(JointTrajectory, profile.arm.command.topic, arm_driver, common.COMMAND_QOS)
    ros_node.create_subscription(Float64MultiArray, profile.hand.command.topic, hand_driver, common.COMMAND_QOS)
    out = tmp_path / "episodes"
    recorder = spawn("dexstack.nodes.recorder", tmp_path / "recorder.log", "-p", f"output_dir:={out}",
                     "-p", f"robot_profile:={PROFILE}", "-p", "calibration:=sim_tabletop_ur5", "-p", "task:=teleop")
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
    window = [_q(m) for _, m in states.items[start::25]]
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
            errors.append(np.abs(_q(msg)[:N_ARM] - np.array(sent[-1].points[-1].positions)).max())
    assert len(errors) > 10 and np.median(errors) < 0.03, errors

    # Recorded with this profile's joints and driver topics, exported with a moving action.
    episode = out / "episode_000000"
    msgs = read_back(episode)
    assert len(msgs[profile.arm.command.topic]) > 100 and len(msgs[profile.hand.command.topic]) > 100
    assert "/arm_controller/joint_trajectory" not in msgs
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


def test_a_cell_of_another_robot_is_refused_with_the_reason(rclpy_context, tmp_path):
    bad = start_graph("sim_cell", {"cell": CELL, "robot_profile": "panda_allegro"}, tmp_path)
    try:
        sim = next(n for n in bad.nodes if n.name == "sim_cell")
        assert wait_for(lambda: "sim_cell" in bad.failed(), 30.0), dump_logs(bad)
        assert sim.process.returncode == 2  # a setup error: its message, no traceback
        log = sim.log_path.read_text()
        assert f"cell '{CELL}' carries robot profile '{PROFILE}', but this graph runs 'panda_allegro'" in log, log
    finally:
        bad.stop()
