"""The recorder's ROS-free core: MCAP writer, rosbag2 metadata, crash repair, write errors, episode control.

Messages are synthetic CDR made with rosbags' typestore; read back with rosbags' AnyReader and the mcap library.
"""

from __future__ import annotations

import errno
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from dexstack.record.episode import (
    STATUS_COMPLETE,
    STATUS_RECOVERED,
    EpisodeInfo,
    EpisodeStore,
    load_episode_info,
    read_metadata_yaml,
)
from dexstack.record.mcap_io import McapStreamWriter, repair_mcap, scan_mcap
from dexstack.record.msgdefs import TypeRegistry, UnknownMessageType, header_stamp_ns
from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec

REG = TypeRegistry()
JS = "sensor_msgs/msg/JointState"
FMA = "std_msgs/msg/Float64MultiArray"
POSE = "geometry_msgs/msg/PoseStamped"


def stamp(ns: int):
    T = REG.message_class("builtin_interfaces/msg/Time")
    return T(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(ns: int, frame: str = ""):
    return REG.message_class("std_msgs/msg/Header")(stamp=stamp(ns), frame_id=frame)


def joint_state(ns: int, names, q) -> bytes:
    cls = REG.message_class(JS)
    empty = np.array([], dtype=np.float64)
    return REG.encode(cls(header=header(ns), name=list(names), position=np.asarray(q, dtype=np.float64),
                          velocity=empty, effort=empty), JS)


def pose(ns: int, x: float) -> bytes:
    P = REG.message_class("geometry_msgs/msg/Pose")
    Pt = REG.message_class("geometry_msgs/msg/Point")
    Q = REG.message_class("geometry_msgs/msg/Quaternion")
    cls = REG.message_class(POSE)
    return REG.encode(cls(header=header(ns, "base"), pose=P(position=Pt(x=x, y=0.0, z=0.0),
                                                             orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0))), POSE)


def multiarray(values) -> bytes:
    cls = REG.message_class(FMA)
    layout = REG.message_class("std_msgs/msg/MultiArrayLayout")(dim=[], data_offset=0)
    return REG.encode(cls(layout=layout, data=np.asarray(values, dtype=np.float64)), FMA)


def new_session(root: Path, **kw) -> RecordingSession:
    s = RecordingSession(SessionConfig(root, **kw), REG)
    s.set_topic(TopicSpec("/joint_states", JS, ({"history": "keep_last", "depth": 10, "reliability": "reliable",
                                                   "durability": "volatile"},)))
    s.set_topic(TopicSpec("/dexstack/object_pose", POSE))
    s.set_topic(TopicSpec("/dexstack/hand/command", FMA))
    return s


def record(session: RecordingSession, n: int, t0: int = 1_000_000_000_000) -> list[int]:
    """n joint states + n poses + n hand commands with header stamps t0 + i ms, received 5 ms later."""
    stamps = []
    for i in range(n):
        ns = t0 + i * 1_000_000
        assert session.submit("/joint_states", joint_state(ns, ["a", "b"], [i, -i]), ns + 5_000_000)
        assert session.submit("/dexstack/object_pose", pose(ns, float(i)), ns + 5_000_000)
        assert session.submit("/dexstack/hand/command", multiarray([i, i]), ns + 5_000_000)
        stamps.append(ns)
    return stamps


def test_episode_round_trip_readable_by_rosbags_and_mcap(tmp_path):
    s = new_session(tmp_path)
    ok, _, index = s.start(task="pick the cube", operator="ana", robot_profile="panda_allegro",
                           calibration="K: [1, 2]", policy="")
    assert ok and index == 0
    stamps = record(s, 50)
    assert s.set_success(True)[0]
    ok, message, path = s.stop()
    s.close()
    assert ok, message
    ep = Path(path)
    assert sorted(p.name for p in ep.iterdir()) == ["episode_000000_0.mcap", "metadata.yaml"]
    meta = read_metadata_yaml(ep)
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap" and meta["message_count"] == 150
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert topics["/joint_states"]["message_count"] == 50
    assert topics["/joint_states"]["topic_metadata"]["type_description_hash"] == REG.schema(JS).type_hash
    assert topics["/joint_states"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
    info = EpisodeInfo.from_custom_data(meta["custom_data"])
    assert (info.index, info.task, info.operator, info.success, info.status) == (0, "pick the cube", "ana", True,
                                                                                    STATUS_COMPLETE)
    assert info.calibration == "K: [1, 2]"

    with AnyReader([ep]) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == {
            "/joint_states": 50, "/dexstack/object_pose": 50, "/dexstack/hand/command": 50}
        xs = [reader.deserialize(raw, c.msgtype).pose.position.x
              for c, _, raw in reader.messages() if c.topic == "/dexstack/object_pose"]
    assert xs == [float(i) for i in range(50)]

    with open(ep / "episode_000000_0.mcap", "rb") as f:
        mr = make_reader(f)
        assert mr.get_header().profile == "ros2"
        summary = mr.get_summary()
        assert summary.statistics.message_count == 150
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        js_schema = next(s for s in summary.schemas.values() if s.name == JS)
        assert b"MSG: std_msgs/Header" in js_schema.data and b"MSG: builtin_interfaces/Time" in js_schema.data
        got = [(m.publish_time, m.log_time) for _, c, m in mr.iter_messages() if c.topic == "/joint_states"]
    assert [p for p, _ in got] == stamps  # publish_time = the header stamp
    assert [lt for _, lt in got] == [t + 5_000_000 for t in stamps]  # log_time = receive time


def _record_boundaries(path: Path) -> list[tuple[int, int]]:
    """(end offset, opcode) of each record of a complete unchunked file (test helper)."""
    data = path.read_bytes()
    out, offset = [], 8
    while offset < len(data) - 8:
        opcode, length = struct.unpack_from("<BQ", data, offset)
        offset += 9 + length
        out.append((offset, opcode))
    return out


def test_repair_keeps_every_complete_message_wherever_the_file_was_cut(tmp_path):
    s = new_session(tmp_path / "src")
    s.start(task="t")
    record(s, 20)
    _, _, path = s.stop()
    s.close()
    mcap = Path(path) / "episode_000000_0.mcap"
    records = _record_boundaries(mcap)
    data_end = next(end for end, op in records if op == 0x0F) - 13  # DataEnd record is 13 bytes
    data = mcap.read_bytes()
    cuts = sorted(set(np.linspace(60, data_end + 40, 37).astype(int)) | {data_end, data_end + 13, len(data) - 1})
    for cut in cuts:
        broken = tmp_path / f"cut_{cut}.mcap"
        broken.write_bytes(data[:cut])
        expected = sum(1 for end, op in records if op == 0x05 and end <= min(cut, data_end))
        result = repair_mcap(broken)
        assert result.message_count == expected
        assert scan_mcap(broken).complete
        with open(broken, "rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == expected
        assert not repair_mcap(broken).repaired  # idempotent


def test_interrupted_episode_is_recovered_and_never_overwritten(tmp_path):
    s = new_session(tmp_path / "live")
    s.start(task="crash me", operator="bo")
    record(s, 30)
    s.set_success(False)
    # the writer has flushed (set_success waits for it): copy the open episode as a SIGKILL would leave it
    shutil.copytree(tmp_path / "live", tmp_path / "eps")
    s.stop()
    s.close()
    store = EpisodeStore(tmp_path / "eps")
    assert [e.index for e in store.interrupted()] == [0]
    reports = store.recover_interrupted()
    assert [r.message_count for r in reports] == [90]
    ep = tmp_path / "eps" / "episode_000000"
    info = load_episode_info(ep)
    assert (info.task, info.operator, info.success, info.status) == ("crash me", "bo", False, STATUS_RECOVERED)
    with AnyReader([ep]) as reader:
        assert sum(c.msgcount for c in reader.connections) == 90
    s2 = new_session(tmp_path / "eps")
    ok, _, index = s2.start()
    assert ok and index == 1  # the next index: episode 0 is kept as it was
    s2.stop()
    s2.close()
    assert load_episode_info(ep).status == STATUS_RECOVERED


class FullDisk:
    """An unbuffered file that accepts ``capacity`` bytes, then writes part of a buffer and fails with ENOSPC."""

    def __init__(self, path: Path, capacity: int):
        self.f = open(path, "xb", buffering=0)  # noqa: SIM115
        self.capacity = capacity
        self.written = 0

    def write(self, b) -> int:
        room = self.capacity - self.written
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.f.write(bytes(b[:room]))
        self.written += n
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_is_reported_and_the_episode_kept_up_to_the_failure(tmp_path):
    events = []
    s = RecordingSession(SessionConfig(tmp_path), REG, opener=lambda p: FullDisk(p, 12_000),
                         on_event=lambda level, text: events.append((level, text)))
    s.set_topic(TopicSpec("/dexstack/object_pose", POSE))
    assert s.start(task="fill the disk")[0]
    for i in range(400):
        s.submit("/dexstack/object_pose", pose(1_000_000_000 + i, float(i)))
    ok, message, path = s.stop()
    status = s.status()
    s.close()
    assert not ok and "ENOSPC" in message
    assert status.state == "error" and "ENOSPC" in status.error
    assert any(level == "error" and "ENOSPC" in text for level, text in events)
    written = status.topic_counts["/dexstack/object_pose"]
    assert 0 < written < 400
    # the summary could not be written either (still no space): repair when there is space again
    reports = EpisodeStore(tmp_path).recover_interrupted()
    assert [r.message_count for r in reports] == [written]
    with AnyReader([Path(path)]) as reader:
        xs = [reader.deserialize(raw, c.msgtype).pose.position.x for c, _, raw in reader.messages()]
    assert xs == [float(i) for i in range(written)]  # every message up to the failure, in order


def test_discard_rerecords_with_the_same_index_and_success_can_be_marked_after_saving(tmp_path):
    s = new_session(tmp_path)
    assert s.start()[2] == 0
    record(s, 5)
    assert s.discard()[0]
    assert not (tmp_path / "episode_000000").exists()
    assert s.start()[2] == 0  # re-record
    record(s, 5)
    assert s.stop()[0]
    assert not s.stop()[0]  # nothing to stop
    ok, _ = s.set_success(True)  # idle: marks the episode just saved
    assert ok and load_episode_info(tmp_path / "episode_000000").success is True
    assert s.start()[2] == 1
    assert not s.start()[0]  # already recording
    s.stop()
    assert s.discard()[0]  # idle: deletes the last saved episode (1), not 0
    assert [e.index for e in EpisodeStore(tmp_path).episodes()] == [0]
    s.close()


def test_messages_beyond_the_queue_limit_are_dropped_and_counted(tmp_path):
    s = new_session(tmp_path, max_queue_bytes=1)  # nothing fits
    s.start()
    assert not s.submit("/joint_states", joint_state(1, ["a"], [0.0]))
    assert not s.submit("/unknown", b"\x00\x01\x00\x00")
    status = s.status()
    assert status.dropped == 2 and status.topic_dropped == {"/joint_states": 1, "/unknown": 1}
    s.stop()
    assert load_episode_info(tmp_path / "episode_000000").dropped == 2
    s.close()


def test_compressed_images_round_trip(tmp_path):
    pytest.importorskip("cv2")
    from dexstack.record.images import decode_image

    img_cls = REG.message_class("sensor_msgs/msg/Image")
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 10)
    depth = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 7)
    s = RecordingSession(SessionConfig(tmp_path, compress_images=True), REG)
    s.set_topic(TopicSpec("/cam/color", "sensor_msgs/msg/Image"))
    s.set_topic(TopicSpec("/cam/depth", "sensor_msgs/msg/Image"))
    s.start()
    s.submit("/cam/color", REG.encode(img_cls(header=header(5), height=48, width=64, encoding="rgb8",
                                              is_bigendian=0, step=192, data=rgb.reshape(-1)), "sensor_msgs/msg/Image"))
    s.submit("/cam/depth", REG.encode(img_cls(header=header(6), height=48, width=64, encoding="16UC1",
                                              is_bigendian=0, step=128, data=depth.view(np.uint8).reshape(-1)),
                                      "sensor_msgs/msg/Image"))
    _, _, path = s.stop()
    s.close()
    from dexstack.record.mcap_io import iter_messages

    got = {m.topic: m for m in iter_messages(next(Path(path).glob("*.mcap")))}
    assert set(got) == {"/cam/color/compressed", "/cam/depth/compressed"}
    color, enc = decode_image(REG, got["/cam/color/compressed"].type_name, got["/cam/color/compressed"].data)
    assert enc == "rgb8" and np.abs(color.astype(int) - rgb).mean() < 3  # JPEG
    d, enc = decode_image(REG, got["/cam/depth/compressed"].type_name, got["/cam/depth/compressed"].data)
    assert enc == "16UC1" and np.array_equal(d, depth)  # PNG: lossless
    assert got["/cam/color/compressed"].publish_time_ns == 5


def test_registry_loads_unknown_types_from_msg_files_and_decodes_leniently(tmp_path):
    (tmp_path / "my_msgs" / "msg").mkdir(parents=True)
    (tmp_path / "my_msgs" / "msg" / "Grip.msg").write_text("std_msgs/Header header\nfloat64[] widths\nstring who\n")
    reg = TypeRegistry(msg_search_dirs=[tmp_path])
    schema = reg.schema("my_msgs/Grip")
    assert schema.type_name == "my_msgs/msg/Grip" and schema.has_header
    assert schema.type_hash.startswith("RIHS01_") and "MSG: std_msgs/Header" in schema.definition
    with pytest.raises(UnknownMessageType):
        reg.schema("nope_msgs/msg/Nothing")
    cls = reg.message_class("my_msgs/msg/Grip")
    raw = reg.encode(cls(header=header(3_000_000_007), widths=np.array([], dtype=np.float64), who="x"),
                     "my_msgs/msg/Grip")
    assert header_stamp_ns(raw) == 3_000_000_007
    padded = raw + b"\x00" * 8  # what rclpy/Fast CDR hands over for some messages with empty arrays
    assert reg.decode(padded, "my_msgs/msg/Grip").who == "x"


def test_metadata_yaml_is_plain_rosbag2(tmp_path):
    s = new_session(tmp_path)
    s.start(task="yaml")
    record(s, 3)
    _, _, path = s.stop()
    s.close()
    doc = yaml.safe_load((Path(path) / "metadata.yaml").read_text())
    info = doc["rosbag2_bagfile_information"]
    assert set(info) >= {"version", "storage_identifier", "duration", "starting_time", "message_count",
                         "topics_with_message_count", "compression_format", "compression_mode",
                         "relative_file_paths", "files", "custom_data", "ros_distro"}
    assert all(isinstance(v, str) for v in info["custom_data"].values())
    assert info["starting_time"]["nanoseconds_since_epoch"] == 1_000_000_000_000 + 5_000_000


def test_writer_refuses_after_a_write_error(tmp_path):
    w = McapStreamWriter(FullDisk(tmp_path / "x.mcap", 100))
    sid = w.add_schema("a", "ros2msg", b"int32 x")
    cid = w.add_channel("/a", "cdr", sid, {})
    w.add_message(cid, 1, 1, b"\x00\x01\x00\x00" + b"\x00" * 200)
    with pytest.raises(OSError) as err:
        w.flush()
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        w.add_message(cid, 2, 2, b"\x00")
    assert w.good_bytes < 100


def test_latched_topics_open_every_episode(tmp_path):
    s = new_session(tmp_path)
    s.set_topic(TopicSpec("/robot_description", "std_msgs/msg/String", latched=True))
    urdf = REG.encode(REG.message_class("std_msgs/msg/String")(data="<robot/>"), "std_msgs/msg/String")
    assert not s.submit("/robot_description", urdf)  # before any episode: kept, not written
    for _ in range(2):
        s.start()
        record(s, 2)
        _, _, path = s.stop()
        with AnyReader([Path(path)]) as reader:
            texts = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages()
                     if c.topic == "/robot_description"]
        assert texts == ["<robot/>"]
    s.close()
