"""LeRobot v3.0 export, replay planning and the terminal UI's key bindings, on synthetic episodes (no ROS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dexstack.cli.record import RecorderView, action_for_key
from dexstack.record.export import ExportConfig, ExportError, export_lerobot
from dexstack.record.replay import load_replay, play
from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec
from dexstack.robot import load_description
from tests.profiles import PROFILES
from tests.unit.test_record_core import REG, header

D = load_description("panda_allegro")
JOINTS = list(D.joints)
N_ARM = len(D.arm_joints)
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
W, H = 128, 96
TOPICS = {
    "/joint_states": "sensor_msgs/msg/JointState",
    "/arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "/hand_controller/commands": "std_msgs/msg/Float64MultiArray",
    "/dexstack/arm/command": "trajectory_msgs/msg/JointTrajectory",
    "/dexstack/hand/command": "std_msgs/msg/Float64MultiArray",
    "/camera/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera/aligned_depth_to_color/image_raw": "sensor_msgs/msg/Image",
}


def q_at(t_ns: int, n: int = len(JOINTS)) -> np.ndarray:
    """Measured joints: linear in time (so linear interpolation is exact)."""
    s = (t_ns - T0) * 1e-9
    return 0.1 + 0.01 * np.arange(n) + 0.2 * s


def target_at(t_ns: int, n: int = len(JOINTS)) -> np.ndarray:
    s = (t_ns - T0) * 1e-9
    return -0.3 + 0.02 * np.arange(n) + 0.5 * s


def msg(type_name: str, **fields):
    return REG.message_class(type_name)(**fields)


def trajectory(ns: int, q: np.ndarray, arm_joints: tuple[str, ...] = D.arm_joints) -> bytes:
    duration = msg("builtin_interfaces/msg/Duration", sec=0, nanosec=10 * MS)
    empty = np.array([], dtype=np.float64)
    point = msg("trajectory_msgs/msg/JointTrajectoryPoint", positions=np.asarray(q, dtype=np.float64),
                velocities=empty, accelerations=empty, effort=empty, time_from_start=duration)
    names = list(arm_joints)[::-1]  # any order, by name
    point.positions = np.ascontiguousarray(np.asarray(q, dtype=np.float64)[::-1])
    return REG.encode(msg("trajectory_msgs/msg/JointTrajectory", header=header(ns), joint_names=names,
                          points=[point]), "trajectory_msgs/msg/JointTrajectory")


def multiarray(values) -> bytes:
    layout = msg("std_msgs/msg/MultiArrayLayout", dim=[], data_offset=0)
    return REG.encode(msg("std_msgs/msg/Float64MultiArray", layout=layout, data=np.asarray(values, dtype=np.float64)),
                      "std_msgs/msg/Float64MultiArray")


def image(ns: int, k: int, depth: bool) -> bytes:
    if depth:
        pixels = np.full((H, W), 100 * (k + 1), dtype=np.uint16)
        data, enc, step = pixels.view(np.uint8).reshape(-1), "16UC1", 2 * W
    else:
        pixels = np.zeros((H, W, 3), np.uint8)
        pixels[..., 0] = min(255, 20 * k)
        pixels[..., 1] = 100
        data, enc, step = pixels.reshape(-1), "rgb8", 3 * W
    return REG.encode(msg("sensor_msgs/msg/Image", header=header(ns, "cam"), height=H, width=W, encoding=enc,
                          is_bigendian=0, step=step, data=data), "sensor_msgs/msg/Image")


def make_episode(root: Path, seconds: float, task: str, success: bool | None, profile: str = "panda_allegro",
                 arm_topic: str = "/arm_controller/joint_trajectory",
                 hand_topic: str | None = "/hand_controller/commands") -> Path:
    """States at 200 Hz whose arrival is late by up to 80 ms in bursts (a slow loop); gated commands at 50 Hz on
    the driver topics (``hand_topic`` None: the hand is never commanded), images at 10 Hz stamped on a 100 ms grid
    from T0."""
    s = RecordingSession(SessionConfig(root), REG)
    topics = {arm_topic if t == "/arm_controller/joint_trajectory" else
              hand_topic if t == "/hand_controller/commands" else t: type_name for t, type_name in TOPICS.items()}
    for topic, type_name in topics.items():
        if topic is not None:
            s.set_topic(TopicSpec(topic, type_name))
    s.start(task=task, robot_profile=profile)
    d = load_description(profile)
    joints, n, n_arm = list(d.joints), len(d.joints), len(d.arm_joints)
    events = []
    empty = np.array([], dtype=np.float64)
    for i in range(int(seconds * 200) + 1):
        ns = T0 + i * 5 * MS
        late = (i % 40) * 2 * MS  # arrival drifts behind the stamp, then catches up
        state = msg("sensor_msgs/msg/JointState", header=header(ns), name=joints[::-1],
                    position=q_at(ns, n)[::-1].copy(), velocity=empty, effort=empty)
        data = REG.encode(state, "sensor_msgs/msg/JointState")
        events.append((ns + late, "/joint_states", data))
    for m in range(int(seconds * 50)):
        ns = T0 + 3 * MS + m * 20 * MS
        events.append((ns, arm_topic, trajectory(ns, target_at(ns, n)[:n_arm], d.arm_joints)))
        if hand_topic is not None:
            events.append((ns + 4 * MS, hand_topic, multiarray(target_at(ns + 4 * MS, n)[n_arm:])))
        events.append((ns + 1 * MS, "/dexstack/arm/command", trajectory(0, target_at(ns, n)[:n_arm], d.arm_joints)))
        events.append((ns + 2 * MS, "/dexstack/hand/command", multiarray(target_at(ns, n)[n_arm:])))
    for k in range(int(seconds * 10) + 1):
        ns = T0 + k * 100 * MS
        events.append((ns + 30 * MS, "/camera/camera/color/image_raw", image(ns, k, False)))
        events.append((ns + 31 * MS, "/camera/camera/aligned_depth_to_color/image_raw", image(ns, k, True)))
    for t, topic, data in sorted(events, key=lambda e: e[0]):
        assert s.submit(topic, data, t)
    if success is not None:
        s.set_success(success)
    ok, message, path = s.stop()
    s.close()
    assert ok, message
    return Path(path)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    make_episode(root, 2.0, "stack the cube", True)
    make_episode(root, 1.0, "open the hand", None)
    make_episode(root, 0.5, "stack the cube", False)
    return root


@pytest.fixture(scope="module")
def dataset(episodes, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "ds"
    report = export_lerobot(episodes, out, ExportConfig(fps=10, only_success=True))
    assert [p.name for p in report.episodes] == ["episode_000000", "episode_000001"]  # 2 was marked failed
    return out


def test_export_writes_the_lerobot_v3_layout(dataset):
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
                "data/chunk-000/file-000.parquet", "videos/observation.images.color/chunk-000/file-000.mp4",
                "videos/observation.images.depth/chunk-000/file-000.mp4"):
        assert (dataset / rel).is_file(), rel
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["robot_type"] == "panda_allegro"
    assert info["total_episodes"] == 2 and info["total_frames"] == 21 + 11 and info["total_tasks"] == 2
    assert info["splits"] == {"train": "0:2"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [23], "names": JOINTS}
    assert f["action"]["names"] == JOINTS
    assert f["observation.images.color"]["dtype"] == "video" and f["observation.images.color"]["shape"] == [H, W, 3]
    assert f["observation.images.depth"]["info"]["video.is_depth_map"] is True
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[name]["shape"] == [1]
    stats = json.loads((dataset / "meta/stats.json").read_text())
    assert set(stats) == set(f)
    assert len(stats["observation.state"]["mean"]) == 23 and stats["observation.state"]["count"] == [32]
    assert np.array(stats["observation.images.color"]["mean"]).shape == (3, 1, 1)


def test_export_frames_are_resampled_by_header_stamps(dataset):
    data = pq.read_table(dataset / "data/chunk-000/file-000.parquet")
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 23)
    assert data.schema.field("action").type == pa.list_(pa.float32(), 23)
    assert data.schema.field("timestamp").type == pa.float32()
    for name in ("frame_index", "episode_index", "index", "task_index"):
        assert data.schema.field(name).type == pa.int64()
    assert data.num_rows == 32
    rows = data.to_pydict()
    assert rows["index"] == list(range(32))
    assert rows["episode_index"] == [0] * 21 + [1] * 11
    assert rows["frame_index"][:21] == list(range(21)) and rows["frame_index"][21:] == list(range(11))
    np.testing.assert_allclose(rows["timestamp"][:21], np.arange(21) / 10, atol=1e-6)
    state = np.array(rows["observation.state"])
    # frame k is at T0 + k * 100 ms by the stamps, although the messages arrived up to 78 ms late
    expected = np.array([q_at(T0 + k * 100 * MS) for k in range(21)])
    np.testing.assert_allclose(state[:21], expected, atol=1e-5)
    action = np.array(rows["action"])
    for k in range(21):
        t = T0 + k * 100 * MS
        arm_stamp = T0 + 3 * MS + ((t - T0 - 3 * MS) // (20 * MS)) * 20 * MS  # latest gated command <= t
        if t < T0 + 3 * MS:  # before the first command: hold the measured position
            np.testing.assert_allclose(action[k, :N_ARM], q_at(t)[:N_ARM], atol=1e-5)
        else:
            np.testing.assert_allclose(action[k, :N_ARM], target_at(arm_stamp)[:N_ARM], atol=1e-5)
    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0, 1], "task": ["stack the cube", "open the hand"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    assert rows["task_index"] == [0] * 21 + [1] * 11


def test_export_episode_table_points_into_the_files(dataset):
    ep = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in ep] == [0, 1]
    assert [e["length"] for e in ep] == [21, 11]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in ep] == [(0, 21), (21, 32)]
    assert ep[0]["tasks"] == ["stack the cube"]
    key = "videos/observation.images.color"
    assert [(e[f"{key}/from_timestamp"], e[f"{key}/to_timestamp"]) for e in ep] == [(0.0, 2.1), (2.1, 3.2)]
    assert all(e["data/chunk_index"] == 0 and e["data/file_index"] == 0 for e in ep)
    assert len(ep[0]["stats/observation.state/mean"]) == 23
    assert ep[0]["dexstack/success"] == "true" and ep[1]["dexstack/success"] == "unknown"


def test_export_videos_decode_to_the_frames(dataset):
    av = pytest.importorskip("av")
    with av.open(str(dataset / "videos/observation.images.color/chunk-000/file-000.mp4")) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 32
    assert (frames[0].width, frames[0].height) == (W, H)
    np.testing.assert_allclose([float(f.time) for f in frames], np.arange(32) / 10, atol=1e-3)
    red = [float(f.to_ndarray(format="rgb24")[..., 0].mean()) for f in frames]
    expected = [20 * k for k in range(21)] + [20 * k for k in range(11)]  # image k at frame k (10 Hz grid)
    np.testing.assert_allclose(red, np.minimum(expected, 255), atol=10)
    with av.open(str(dataset / "videos/observation.images.depth/chunk-000/file-000.mp4")) as c:
        depth = [float(f.to_ndarray(format="rgb24")[..., 0].mean()) for f in c.decode(video=0)]
    np.testing.assert_allclose(depth[:21], [min(255, 100 * (k + 1) * 255 / 2000) for k in range(21)], atol=6)


def test_export_refuses_to_overwrite(episodes, dataset):
    with pytest.raises(ExportError, match="not empty"):
        export_lerobot(episodes, dataset)


def test_replay_plan_keeps_the_original_timing(episodes):
    plan = load_replay(episodes / "episode_000001")
    assert {i.topic for i in plan.items} == {"/dexstack/arm/command", "/dexstack/hand/command"}
    offsets = [i.offset_s for i in plan.items]
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    assert plan.items[1].offset_s == pytest.approx(0.001)
    np.testing.assert_allclose(plan.final(JOINTS), q_at(T0 + 200 * 5 * MS), atol=1e-9)
    now = [0.0]
    sent = []
    n = play(plan.items, lambda item: sent.append((now[0], item.topic)), speed=2.0, clock=lambda: now[0],
             sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert n == len(plan.items)
    np.testing.assert_allclose([t for t, _ in sent], np.array(offsets) / 2.0)


def test_ui_keys_and_view():
    assert action_for_key(" ") == "start" and action_for_key("\x1b[C") == "stop"
    assert action_for_key("\x1b[D") == "discard" and action_for_key("Y") == "success"
    assert action_for_key("n") == "failure" and action_for_key("q") == "quit" and action_for_key("x") is None
    view = RecorderView.from_values(0, "recording episode 3", {
        "state": "recording", "episode_index": "3", "elapsed_s": "12.5", "messages": "1200", "dropped": "4",
        "hz[/joint_states]": "250.0"})
    text = "\n".join(view.lines())
    assert "RECORDING episode 3" in text and "messages 1200" in text and "dropped 4" in text


# ------------------------------------------------------------------------------ stats, chunking, depth, topics
def test_stats_carry_lerobots_quantiles_for_every_feature(dataset):
    from dexstack.record.stats import QUANTILE_KEYS

    assert QUANTILE_KEYS == ("q01", "q10", "q50", "q90", "q99")
    stats = json.loads((dataset / "meta/stats.json").read_text())
    for feature, values in stats.items():
        assert set(values) == {"min", "max", "mean", "std", "count", *QUANTILE_KEYS}, feature
    state = np.array(pq.read_table(dataset / "data/chunk-000/file-000.parquet").column("observation.state")
                     .to_pylist())
    episodes = (state[:21], state[21:])
    for key, q in zip(QUANTILE_KEYS, (0.01, 0.10, 0.50, 0.90, 0.99)):
        per_episode = np.array([np.quantile(e, q, axis=0) for e in episodes])
        expected = per_episode.min(axis=0) if q <= 0.5 else per_episode.max(axis=0)  # LeRobot's aggregation
        np.testing.assert_allclose(stats["observation.state"][key], expected, rtol=1e-6)
    color = {k: np.array(v) for k, v in stats["observation.images.color"].items()}
    assert color["q50"].shape == (3, 1, 1) and color["count"].tolist() == [32]
    # green is 100 in every frame, red ramps 0..255 in 20-steps: per-channel quantiles in [0, 1]
    np.testing.assert_allclose(color["q01"][1], 100 / 255, atol=0.02)
    np.testing.assert_allclose(color["q99"][1], 100 / 255, atol=0.02)
    assert color["q10"][0, 0, 0] < color["q50"][0, 0, 0] < color["q90"][0, 0, 0] <= 1.0


def test_aggregated_stats_follow_lerobots_rules():
    from dexstack.record.stats import aggregate_stats, feature_stats

    a, b = np.arange(10.0)[:, None], 100 + np.arange(30.0)[:, None]
    agg = aggregate_stats([feature_stats(a), feature_stats(b)])
    both = np.concatenate([a, b])
    np.testing.assert_allclose(agg["mean"], both.mean(axis=0))
    np.testing.assert_allclose(agg["std"], both.std(axis=0))
    assert agg["count"].tolist() == [40] and agg["min"].tolist() == [0.0] and agg["max"].tolist() == [129.0]
    # quantiles: the most extreme episode value (min below the median, max above), as LeRobot aggregates
    np.testing.assert_allclose(agg["q01"], np.quantile(a, 0.01, axis=0))
    np.testing.assert_allclose(agg["q99"], np.quantile(b, 0.99, axis=0))


def test_chunking_follows_the_sizes_declared_in_info(episodes, tmp_path):
    out = tmp_path / "chunked"
    export_lerobot(episodes, out, ExportConfig(fps=10, vcodec="libx264", chunks_size=1, data_files_size_in_mb=1e-6,
                                               video_files_size_in_mb=1e-6))
    info = json.loads((out / "meta/info.json").read_text())
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (1, 1e-6, 1e-6)
    ep = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert len(ep) == 3  # every episode in its own file, and (1 file per chunk) its own chunk
    assert [(e["data/chunk_index"], e["data/file_index"]) for e in ep] == [(0, 0), (1, 0), (2, 0)]
    av = pytest.importorskip("av")
    for e in ep:
        data = pq.read_table(out / info["data_path"].format(chunk_index=e["data/chunk_index"],
                                                            file_index=e["data/file_index"]))
        assert data.column("episode_index").to_pylist() == [e["episode_index"]] * e["length"]
        assert data.column("index").to_pylist() == list(range(e["dataset_from_index"], e["dataset_to_index"]))
        key = "videos/observation.images.color"
        assert (e[f"{key}/chunk_index"], e[f"{key}/file_index"]) == (e["episode_index"], 0)
        assert e[f"{key}/from_timestamp"] == 0.0 and e[f"{key}/to_timestamp"] == pytest.approx(e["length"] / 10)
        video = out / info["video_path"].format(video_key="observation.images.color",
                                                chunk_index=e[f"{key}/chunk_index"], file_index=e[f"{key}/file_index"])
        with av.open(str(video)) as c:
            assert sum(1 for _ in c.decode(video=0)) == e["length"]
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("data/*/*.parquet")) == [
        "data/chunk-000/file-000.parquet", "data/chunk-001/file-000.parquet", "data/chunk-002/file-000.parquet"]


def test_depth_can_be_exported_losslessly_as_16_bit_png(episodes, tmp_path):
    import cv2

    out = tmp_path / "png16"
    export_lerobot(episodes / "episode_000001", out, ExportConfig(fps=10, vcodec="libx264", depth_format="png16"))
    info = json.loads((out / "meta/info.json").read_text())
    depth = info["features"]["observation.images.depth"]
    assert depth["dtype"] == "image" and depth["shape"] == [H, W, 1]
    assert depth["info"]["is_depth_map"] is True and depth["info"]["depth_unit"] == "mm"
    assert not (out / "videos/observation.images.depth").exists()
    column = pq.read_table(out / "data/chunk-000/file-000.parquet").column("observation.images.depth").to_pylist()
    frames = [cv2.imdecode(np.frombuffer(c["bytes"], np.uint8), cv2.IMREAD_UNCHANGED) for c in column]
    assert len(frames) == 11 and frames[0].dtype == np.uint16
    for k, frame in enumerate(frames):  # exact millimetres (an 8-bit video would step 7.8 mm at 2 m)
        np.testing.assert_array_equal(frame, np.full((H, W), 100 * (k + 1), np.uint16))
    stats = json.loads((out / "meta/stats.json").read_text())["observation.images.depth"]
    assert np.array(stats["mean"]).shape == (1, 1, 1)  # depth stats stay in millimetres
    assert stats["min"] == [[[100.0]]] and stats["max"] == [[[1100.0]]]


def test_metadata_holds_no_absolute_path(dataset, episodes):
    for path in (dataset / "meta").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert str(episodes).encode() not in text and str(dataset).encode() not in text, path
    ep = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["dexstack/source"] for e in ep] == ["episode_000000", "episode_000001"]


def test_actions_come_from_the_profiles_driver_topics(tmp_path):
    """Another profile's command topics: the export reads them (not hard-coded /arm_controller/...)."""
    import yaml

    from dexstack.paths import data_path

    raw = yaml.safe_load(data_path("config", "robots", "panda_allegro.yaml").read_text())
    raw["arm"]["command"]["topic"] = "/left/arm_controller/joint_trajectory"
    raw["hand"]["command"]["topic"] = "/left/hand_controller/commands"
    profile = tmp_path / "renamed.yaml"
    profile.write_text(yaml.safe_dump(raw))
    root = tmp_path / "episodes"
    make_episode(root, 0.5, "renamed", True, profile=str(profile), arm_topic="/left/arm_controller/joint_trajectory",
                 hand_topic="/left/hand_controller/commands")
    export_lerobot(root, tmp_path / "ds", ExportConfig(fps=10, cameras={}))
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    action = np.array(data.column("action").to_pylist())
    last = T0 + 3 * MS + 24 * 20 * MS  # the last commands before the last frame (500 ms)
    np.testing.assert_allclose(action[-1, :N_ARM], target_at(last)[:N_ARM], atol=1e-5)
    np.testing.assert_allclose(action[-1, N_ARM:], target_at(last + 4 * MS)[N_ARM:], atol=1e-5)


def test_export_fails_loudly_when_a_commanded_part_has_no_commands(tmp_path):
    from dexstack.record.export import MissingActionsError

    root = tmp_path / "episodes"
    make_episode(root, 0.5, "arm only", True, hand_topic=None)
    with pytest.raises(MissingActionsError, match="no hand command on /hand_controller/commands"):
        export_lerobot(root, tmp_path / "ds", ExportConfig(fps=10, cameras={}))
    assert not (tmp_path / "ds").exists()  # nothing half-written
    export_lerobot(root, tmp_path / "held", ExportConfig(fps=10, cameras={}, allow_missing_actions=True))
    data = pq.read_table(tmp_path / "held/data/chunk-000/file-000.parquet")
    state, action = (np.array(data.column(c).to_pylist()) for c in ("observation.state", "action"))
    np.testing.assert_allclose(action[:, N_ARM:], state[:, N_ARM:])  # held at the measured position


@pytest.mark.parametrize("profile", PROFILES)
def test_export_on_every_profile_has_its_joints_and_actions_from_its_driver_topics(profile, tmp_path):
    d = load_description(profile)
    root = tmp_path / "episodes"
    make_episode(root, 0.5, "any robot", True, profile=profile, arm_topic=d.profile.arm.command.topic,
                 hand_topic=d.profile.hand.command.topic)
    export_lerobot(root, tmp_path / "ds", ExportConfig(fps=10, cameras={}))
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["robot_type"] == profile
    assert info["features"]["observation.state"]["names"] == info["features"]["action"]["names"] == list(d.joints)
    data = pq.read_table(tmp_path / "ds/data/chunk-000/file-000.parquet")
    state, action = (np.array(data.column(c).to_pylist()) for c in ("observation.state", "action"))
    n, n_arm = len(d.joints), len(d.arm_joints)
    last = T0 + 3 * MS + 24 * 20 * MS  # the last commands before the last frame (500 ms)
    np.testing.assert_allclose(action[-1, :n_arm], target_at(last, n)[:n_arm], atol=1e-5)
    np.testing.assert_allclose(action[-1, n_arm:], target_at(last + 4 * MS, n)[n_arm:], atol=1e-5)
    np.testing.assert_allclose(state[-1], q_at(T0 + 500 * MS, n), atol=1e-5)
