"""recorder: records demonstration episodes as rosbag2 MCAP directories (one per episode), crash-safe.

Subscribes (``raw=True``: the serialized bytes go to disk without re-serialisation) to every topic named by the
``topics`` parameter that appears in the graph, with the type the graph reports (message class resolved with
importlib) and a QoS matching its publishers. Episode control: ``~/start``, ``~/stop`` (save), ``~/discard``
(re-record) as std_srvs/Trigger and ``~/set_success`` (std_srvs/SetBool); ``dexstack-record`` (the terminal UI,
``dexstack/cli/record.py``) calls them from the keyboard. Progress, counts, drops and write errors on
``/diagnostics``. At start-up, episodes interrupted by a crash are repaired and kept (never overwritten).
The file format and the writer live in ``dexstack/record/`` (no rclpy there).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

from dexstack.diagnostics import Level, StatusReport
from dexstack.nodes import common
from dexstack.record.msgdefs import UnknownMessageType, normalize_type_name
from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec

DEFAULT_TOPICS = [
    "/joint_states",
    "/dexstack/arm/command", "/dexstack/hand/command", "/dexstack/hand/command_stamped",  # before the gate
    # after it: the drivers' inputs come from the robot profile (arm.command.topic, hand.command.topic) and are
    # always recorded: they are the dataset's action
    "/dexstack/estop",
    "/camera/camera/color/image_raw", "/camera/camera/color/camera_info",
    "/camera/camera/aligned_depth_to_color/image_raw", "/camera/camera/aligned_depth_to_color/camera_info",
    "/dexstack/hand_keypoints", "/dexstack/wrist_pose", "/dexstack/object_pose",
    "/dexstack/sim/object_pose_gt",
    "/tf", "/tf_static", "/robot_description",
]
_SENSOR_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                 "sensor_msgs/msg/PointCloud2"}


def _no_empty(value: list) -> str | None:
    return None if value and all(isinstance(t, str) and t.startswith("/") for t in value) else \
        "topics must be a non-empty list of absolute topic names"


@dataclass
class Params:
    output_dir: str = common.param("recordings", "Folder of the episode directories (created if missing).",
                                   read_only=True)
    topics: list = common.param(list(DEFAULT_TOPICS), "Topics to record when they are in the graph (absolute names).",
                                validate=_no_empty)
    task: str = common.param("", "Task text of the next episodes (LeRobot 'task').")
    operator: str = common.param("", "Who demonstrates.")
    robot_profile: str = common.param("panda_allegro", "Robot profile (config/robots/<name>.yaml): joint names "
                                      "for export and the driver command topics, always recorded.", read_only=True)
    calibration: str = common.param("sim_tabletop", "Camera calibration (calibration/<name>/camera.yaml or a path); "
                                    "its content is stored with each episode; '' for none.")
    policy: str = common.param("", "Policy driving the robot ('' for teleoperation or a scripted motion).")
    compress_images: bool = common.param(False, "Store sensor_msgs/Image as <topic>/compressed (JPEG color, "
                                         "PNG depth) instead of raw.", read_only=True)
    max_queue_mb: int = common.param(512, "Writer backlog (MiB) before messages are dropped.", read_only=True,
                                     min=8, max=16384)
    fsync_period_s: float = common.param(1.0, "fsync the episode file this often (power-loss safety).",
                                         read_only=True, min=0.05, max=60.0)
    discovery_period_s: float = common.param(0.5, "How often the graph is checked for new topics.", read_only=True,
                                             min=0.05, max=10.0)
    diagnostics_rate_hz: float = common.param(2.0, "Rate of /diagnostics.", read_only=True, min=0.1, max=10.0)


def _duration_dict(duration) -> dict:
    ns = int(duration.nanoseconds)
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def qos_dict(profile: QoSProfile) -> dict:
    """A publisher's QoS as rosbag2 (format 9) writes it in offered_qos_profiles."""
    return {
        "history": "keep_last" if profile.history == HistoryPolicy.KEEP_LAST else "keep_all",
        "depth": int(profile.depth),
        "reliability": "reliable" if profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort",
        "durability": "transient_local" if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL else "volatile",
        "deadline": _duration_dict(profile.deadline),
        "lifespan": _duration_dict(profile.lifespan),
        "liveliness": str(profile.liveliness.name).lower(),
        "liveliness_lease_duration": _duration_dict(profile.liveliness_lease_duration),
        "avoid_ros_namespace_conventions": bool(profile.avoid_ros_namespace_conventions),
    }


def subscription_qos(type_name: str, offered: list[QoSProfile]) -> QoSProfile:
    """Match the publishers (like ``ros2 bag record``): reliable only if every publisher is (or none is known
    yet: commands in this stack are reliable), transient local only if every publisher is; deeper queues than the
    nodes' own so a busy recorder does not lose messages."""
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)  # no publisher yet: reliable
    latched = bool(offered) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10 if type_name in _SENSOR_TYPES else 200,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def message_class(type_name: str):
    """``sensor_msgs/msg/JointState`` -> the rclpy message class (importlib)."""
    pkg, sub, name = normalize_type_name(type_name).split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder")
        # task/operator/policy/robot_profile/calibration are read at each ~/start; `topics` by each discovery
        # (added topics subscribed, removed ones unsubscribed); the writer's settings are read-only
        self.params = common.declare_params(self, Params)
        p = self.params
        from dexstack.robot.profile import load_profile

        self.driver_topics = sorted(load_profile(p.robot_profile).command_topics.values())
        self.session = RecordingSession(
            SessionConfig(Path(p.output_dir), max_queue_bytes=p.max_queue_mb << 20, fsync_period_s=p.fsync_period_s,
                          compress_images=p.compress_images),
            on_event=self._on_event)
        for report in self.session.store.recover_interrupted():
            log = self.get_logger().warning if report.message_count >= 0 else self.get_logger().error
            log(f"interrupted episode {report.path}: {report.reason}; kept {report.message_count} messages "
                f"(cut {report.dropped_bytes} bytes of an incomplete record)")
        self._subscribed: dict[str, str] = {}  # topic -> type
        self._recorded_subs: dict[str, object] = {}  # topic -> rclpy subscription
        self._unrecordable: set[str] = set()
        self._last_counts: dict[str, int] = {}
        self._last_diag = time.monotonic()
        self.diag_pub = self.create_publisher(common.DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.create_service(SetBool, "~/set_success", self._on_set_success)
        self.create_timer(p.discovery_period_s, self._discover)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._publish_diagnostics)
        self._discover()
        self.get_logger().info(f"recorder ready: episodes under {self.session.store.root} "
                               f"(next index {self.session.store.next_index()}); call ~/start")

    def _on_event(self, level: str, text: str) -> None:
        {"error": self.get_logger().error, "warn": self.get_logger().warning}.get(level, self.get_logger().info)(text)

    # ------------------------------------------------------------------ topics
    def _discover(self) -> None:
        wanted = set(self.params.topics) | set(self.driver_topics)
        for topic in sorted(set(self._subscribed) - wanted):  # removed from `topics`: stop recording it
            self.destroy_subscription(self._recorded_subs.pop(topic))
            del self._subscribed[topic]
            self.get_logger().info(f"no longer recording {topic}")
        for topic, types in self.get_topic_names_and_types():
            if topic not in wanted or topic in self._subscribed or topic in self._unrecordable or not types:
                continue
            type_name = normalize_type_name(types[0])
            offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
            if not offered and type_name in _SENSOR_TYPES:
                continue  # sensor streams may be best effort: wait for a publisher to learn its QoS
            # no publisher yet (e.g. a command input the safety monitor listens to): subscribe now, reliable, so
            # the first message of a command source that starts later is not missed
            try:
                cls = message_class(type_name)
                qos = subscription_qos(type_name, offered)
                self.session.set_topic(TopicSpec(topic, type_name, tuple(qos_dict(q) for q in offered),
                                                 latched=qos.durability == DurabilityPolicy.TRANSIENT_LOCAL))
            except (ImportError, AttributeError, UnknownMessageType, ValueError) as exc:
                self._unrecordable.add(topic)
                self.get_logger().error(f"cannot record {topic} ({type_name}): {exc}")
                continue
            self._recorded_subs[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic: self.session.submit(t, data), qos, raw=True)
            self._subscribed[topic] = type_name
            self.get_logger().info(f"recording {topic} [{type_name}]")

    # ------------------------------------------------------------------ services
    def _episode_fields(self) -> dict:
        p = self.params
        calibration_path, calibration = "", ""
        if p.calibration:
            from dexstack.calibration.camera import CalibrationError
            from dexstack.calibration.camera import calibration_path as find_calibration

            try:
                path = find_calibration(p.calibration)
                calibration_path, calibration = str(path), path.read_text()
            except (CalibrationError, OSError) as exc:
                self.get_logger().warning(f"calibration not stored: {exc}")
        return {"task": p.task, "operator": p.operator, "robot_profile": p.robot_profile,
                "calibration_path": calibration_path, "calibration": calibration, "policy": p.policy}

    def _on_start(self, _request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message, _ = self.session.start(**self._episode_fields())
        return response

    def _on_stop(self, _request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message, _ = self.session.stop()
        return response

    def _on_discard(self, _request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.session.discard()
        return response

    def _on_set_success(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        response.success, response.message = self.session.set_success(bool(request.data))
        return response

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        s = self.session.status()
        now = time.monotonic()
        dt = max(1e-3, now - self._last_diag)
        rates = {t: (n - self._last_counts.get(t, 0)) / dt for t, n in s.topic_counts.items()}
        self._last_counts, self._last_diag = dict(s.topic_counts), now
        if s.error:
            level, message = Level.ERROR, s.error
        elif s.state == "recording" and s.dropped:
            level, message = Level.WARN, f"recording episode {s.episode_index}: {s.dropped} messages dropped"
        elif s.state == "recording":
            level, message = Level.OK, f"recording episode {s.episode_index}"
        else:
            level, message = Level.OK, "idle"
        values = {
            "state": s.state,
            "episode_index": str(s.episode_index),
            "next_index": str(self.session.store.next_index()) if s.state != "recording" else str(s.episode_index),
            "elapsed_s": f"{s.elapsed_s:.1f}",
            "messages": str(s.messages),
            "dropped": str(s.dropped),
            "bytes_written": str(s.bytes_written),
            "queue_mb": f"{s.queue_bytes / 2**20:.1f}",
            "episodes_saved": str(s.episodes_saved),
            "last_episode": s.last_episode_path,
            "output_dir": str(self.session.store.root),
            "subscribed": str(len(self._subscribed)),
            "subscribed_topics": ",".join(sorted(self._subscribed)),
            "error": s.error,
            **{f"count[{t}]": str(n) for t, n in sorted(s.topic_counts.items())},
            **{f"hz[{t}]": f"{r:.1f}" for t, r in sorted(rates.items())},
            **{f"dropped[{t}]": str(n) for t, n in sorted(s.topic_dropped.items())},
        }
        self.diag_pub.publish(common.diagnostic_array(self, [StatusReport("recorder", level, message, values)]))

    def close(self) -> None:
        """Ctrl-C / SIGTERM: save an episode in progress."""
        self.session.close()


def main(args: list[str] | None = None) -> None:
    common.run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
