"""The recorder with real nodes over real DDS: record the sim cell driven by scripted_motion, read the episode back
(rosbags, mcap, rclpy), export it to LeRobot v3, replay it through the safety monitor; SIGKILL mid-episode and
recover everything the recorder had written.

Until setup.py lists ``recorder``, the node runs as ``python -m dexstack.nodes.recorder`` (conftest set the env).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger

from dexstack.nodes import common
from dexstack.nodes.recorder import DEFAULT_TOPICS
from dexstack.record.episode import STATUS_COMPLETE, STATUS_RECOVERED, load_episode_info
from dexstack.robot import load_description
from tests.ros_harness import call_service, wait_for

D = load_description("panda_allegro")
N_ARM = len(D.arm_joints)
MOTION = """keyframes:
  - t: 0.0
  - t: 1.5
    arm_rad: {panda_joint1: 0.35, panda_joint4: -2.0}
    hand_rad: {joint_1.0: 0.8, joint_5.0: 0.8, joint_9.0: 0.6}
  - t: 2.5
"""  # the last keyframe holds: the safety monitor holds its (jerk-filtered) setpoint once a trajectory ends


def spawn(module: str, log: Path, *ros_args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], env=os.environ,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class Watch:
    """Test-side view of /joint_states and the recorder's /diagnostics."""

    def __init__(self, node):
        self.node = node
        self.q = None
        self.diag: dict[str, str] = {}
        node.create_subscription(JointState, "/joint_states", self._on_state, common.STATE_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_state(self, msg):
        order = [list(msg.name).index(n) for n in D.joints]
        self.q = np.array(msg.position)[order]

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name == "recorder":
                self.diag = {kv.key: kv.value for kv in status.values}

    def subscribed(self, *topics: str) -> bool:
        have = set(self.diag.get("subscribed_topics", "").split(","))
        return all(t in have for t in topics)

    def count(self, topic: str) -> int:
        return int(self.diag.get(f"count[{topic}]", 0))

    def call(self, service: str, srv=Trigger, request=None):
        return call_service(self.node, srv, service, request or srv.Request(), attempts=1, timeout_s=15.0)

    def start(self, index: int) -> None:
        """~/start, retried: a response lost while a new client is matched (Fast DDS) shows up on the retry as
        'already recording episode <index>'."""
        response = call_service(self.node, Trigger, "/recorder/start", Trigger.Request(), attempts=3, timeout_s=5.0)
        assert response.success or f"already recording episode {index}" in response.message, response.message
        assert f"episode {index}" in response.message, response.message


def set_joint_states(node, enabled: bool) -> None:
    request = SetParameters.Request(parameters=[Parameter(name="publish_joint_states", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=enabled))])
    assert call_service(node, SetParameters, "/sim_cell/set_parameters", request).results[0].successful


def read_back(episode: Path) -> dict[str, list]:
    """Every message through rosbags' AnyReader (structure) and rclpy (payloads); checks against mcap's reader."""
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([episode]) as reader:
        for connection, log_time, raw in reader.messages():
            pkg, sub, name = connection.msgtype.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.{sub}"), name)
            out.setdefault(connection.topic, []).append((log_time, deserialize_message(bytes(raw), cls)))
    with open(next(episode.glob("*.mcap")), "rb") as f:
        mr = make_reader(f)
        schemas = mr.get_summary().schemas.values()
        assert {s.encoding for s in schemas} == {"ros2msg"}
        stamps = [(m.publish_time, deserialize_message(m.data, JointState).header.stamp)
                  for _, c, m in mr.iter_messages(topics=["/joint_states"])]
    assert all(p == s.sec * 1_000_000_000 + s.nanosec for p, s in stamps)  # publish_time = header stamp
    with open(next(episode.glob("*.mcap")), "rb") as f:
        assert sum(len(v) for v in out.values()) == sum(1 for _ in make_reader(f).iter_messages())
    return out


@pytest.fixture
def watch(ros_node, sim_cell_graph):
    w = Watch(ros_node)
    assert wait_for(lambda: w.q is not None, 30.0), "sim cell not up"
    return w


def test_record_scripted_demo_then_export_and_replay(watch, ros_node, tmp_path):
    from dexstack.cli.record import replay_episode
    from dexstack.record.export import ExportConfig, export_lerobot
    from dexstack.record.replay import load_replay

    out = tmp_path / "episodes"
    motion = tmp_path / "short.yaml"
    motion.write_text(MOTION)
    recorder = spawn("dexstack.nodes.recorder", tmp_path / "recorder.log", "-p", f"output_dir:={out}",
                     "-p", "task:=lean and close", "-p", "operator:=ci")
    scripted = None
    try:
        set_joint_states(ros_node, False)  # hold the scripted motion back until the recorder listens
        scripted = spawn("dexstack.nodes.scripted_motion", tmp_path / "scripted.log", "-p", f"motion:={motion}")
        assert wait_for(lambda: watch.subscribed("/dexstack/arm/command", "/dexstack/hand/command",
                                                 "/arm_controller/joint_trajectory", "/hand_controller/commands",
                                                 "/camera/camera/color/image_raw"), 30.0), watch.diag
        assert wait_for(lambda: ros_node.count_publishers("/dexstack/arm/command") >= 1, 15.0)
        time.sleep(0.5)  # let the recorder's subscription match scripted_motion's publishers
        watch.start(0)
        set_joint_states(ros_node, True)  # the motion starts on the first joint state
        assert wait_for(lambda: watch.count("/dexstack/arm/command") >= 1, 10.0), watch.diag
        motion_end = D.home(D.joints)
        motion_end[0], motion_end[3] = 0.35, -2.0
        assert wait_for(lambda: np.abs(watch.q[:N_ARM] - motion_end[:N_ARM]).max() < 0.01, 20.0), watch.q
        time.sleep(0.5)  # and the hand settles
        assert watch.call("/recorder/set_success", SetBool, SetBool.Request(data=True)).success
        response = watch.call("/recorder/stop")
        assert response.success, response.message
    finally:
        set_joint_states(ros_node, True)
        if scripted is not None:
            stop(scripted)
        assert stop(recorder) == 0, (tmp_path / "recorder.log").read_text()[-3000:]

    episode = out / "episode_000000"
    info = load_episode_info(episode)
    assert (info.task, info.operator, info.success, info.status) == ("lean and close", "ci", True, STATUS_COMPLETE)
    assert "fx" in info.calibration or "K" in info.calibration  # the calibration file's content
    msgs = read_back(episode)
    assert len(msgs["/dexstack/arm/command"]) == 1  # scripted_motion sends the whole arm motion at once
    assert len(msgs["/dexstack/hand/command"]) > 50 and len(msgs["/hand_controller/commands"]) > 100
    assert len(msgs["/arm_controller/joint_trajectory"]) > 100 and len(msgs["/joint_states"]) > 300
    assert len(msgs["/robot_description"]) == 1  # transient local: published before the episode, recorded in it
    images = msgs["/camera/camera/color/image_raw"]
    assert len(images) > 10 and len(msgs["/camera/camera/aligned_depth_to_color/image_raw"]) > 10
    final_recorded = msgs["/joint_states"][-1][1]
    q_final = np.array(final_recorded.position)[[list(final_recorded.name).index(n) for n in D.joints]]
    assert q_final[0] == pytest.approx(0.35, abs=0.02)  # the motion happened

    # export: LeRobot v3 layout, one frame per 1/15 s, video frames = rows
    dataset = tmp_path / "dataset"
    report = export_lerobot(out, dataset, ExportConfig(fps=15, vcodec="libx264"))
    assert report.total_frames > 30
    import av
    import pyarrow.parquet as pq

    info_json = json.loads((dataset / "meta/info.json").read_text())
    data = pq.read_table(dataset / "data/chunk-000/file-000.parquet")
    assert info_json["total_frames"] == data.num_rows == report.total_frames
    assert info_json["features"]["observation.state"]["names"] == list(D.joints)
    with av.open(str(dataset / "videos/observation.images.color/chunk-000/file-000.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == data.num_rows
    assert (frames[0].width, frames[0].height) == (images[0][1].width, images[0][1].height)
    state = np.array(data.column("observation.state").to_pylist())
    assert state[-1, 0] == pytest.approx(0.35, abs=0.02)

    # replay through the safety monitor: from the start pose, the robot ends where the recording ended
    plan = load_replay(episode)
    at_replay_start = {}

    def log(text):
        if text.startswith("replaying"):
            at_replay_start["q"] = watch.q.copy()

    replay_episode(ros_node, episode, goto_start=True, settle_s=3.0, log=log)
    assert np.abs(at_replay_start["q"][:N_ARM] - plan.final(D.arm_joints)).max() > 0.2  # it had moved away
    wait_for(lambda: np.abs(watch.q[:N_ARM] - plan.final(D.arm_joints)).max() < 0.01, 15.0)
    time.sleep(0.5)
    np.testing.assert_allclose(watch.q[:N_ARM], plan.final(D.arm_joints), atol=0.03)
    np.testing.assert_allclose(watch.q[N_ARM:], plan.final(D.hand_joints), atol=0.06)


def test_sigkill_mid_episode_keeps_every_written_message(watch, ros_node, tmp_path):
    out = tmp_path / "episodes"
    args = ("-p", f"output_dir:={out}", "-p", "task:=survive a crash")
    pub = ros_node.create_publisher(PoseStamped, "/dexstack/object_pose", common.COMMAND_QOS)
    recorder = spawn("dexstack.nodes.recorder", tmp_path / "recorder1.log", *args)
    try:
        assert wait_for(lambda: watch.subscribed("/dexstack/object_pose", "/joint_states",
                                                 "/camera/camera/color/image_raw"), 30.0), watch.diag
        assert wait_for(lambda: pub.get_subscription_count() >= 1, 10.0)
        time.sleep(0.3)
        watch.start(0)
        sent = 0
        reported = 0
        deadline = time.monotonic() + 20.0
        while reported < 150 and time.monotonic() < deadline:
            msg = PoseStamped()
            msg.header.stamp.sec = sent  # the sequence number
            pub.publish(msg)
            sent += 1
            time.sleep(0.005)
            reported = watch.count("/dexstack/object_pose")
        assert reported >= 150, watch.diag
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    finally:
        if recorder.poll() is None:
            recorder.kill()
    episode = out / "episode_000000"
    assert not (episode / "metadata.yaml").exists()  # killed: never closed

    watch.diag = {}
    restarted = spawn("dexstack.nodes.recorder", tmp_path / "recorder2.log", *args)
    try:
        assert wait_for(lambda: (episode / "metadata.yaml").exists(), 30.0)  # repaired at start-up
        assert wait_for(lambda: watch.diag.get("state") == "idle" and watch.diag.get("next_index") == "1"
                        and watch.subscribed("/joint_states"), 30.0), watch.diag
        # writable parameters apply live: `task` to the next episode; a topic removed from `topics` stops being
        # recorded (the driver topics of the robot profile are always recorded)
        topics = [t for t in DEFAULT_TOPICS if t != "/joint_states"]
        request = SetParameters.Request(parameters=[
            Parameter(name="task", value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                        string_value="after the crash")),
            Parameter(name="topics", value=ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                                          string_array_value=topics))])
        assert all(r.successful for r in call_service(ros_node, SetParameters, "/recorder/set_parameters",
                                                      request).results)
        assert wait_for(lambda: not watch.subscribed("/joint_states") and watch.subscribed(
            "/camera/camera/color/image_raw", *D.profile.command_topics.values()), 10.0), watch.diag
        watch.start(1)  # the next index: episode 0 is never overwritten
        time.sleep(0.5)
        assert watch.call("/recorder/stop").success
    finally:
        assert stop(restarted) == 0, (tmp_path / "recorder2.log").read_text()[-3000:]
    assert "interrupted episode" in (tmp_path / "recorder2.log").read_text()

    info = load_episode_info(episode)
    assert (info.status, info.task) == (STATUS_RECOVERED, "survive a crash")
    msgs = read_back(episode)
    seq = [m.header.stamp.sec for _, m in msgs["/dexstack/object_pose"]]
    assert seq == list(range(len(seq)))  # in order, no hole
    assert len(seq) >= reported  # every message the recorder reported written is there
    assert len(msgs["/joint_states"]) > 0 and len(msgs["/camera/camera/color/image_raw"]) > 0
    assert (out / "episode_000001" / "metadata.yaml").exists()
    assert load_episode_info(out / "episode_000001").task == "after the crash"
    after = read_back(out / "episode_000001")
    assert "/joint_states" not in after and len(after["/camera/camera/color/image_raw"]) > 0
