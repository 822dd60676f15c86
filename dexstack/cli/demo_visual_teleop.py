"""The main job's visual-teleoperation mode: the robot follows a rendered human hand through the real perception path.

    ./scripts/demo.sh --mode visual_teleop          (or: dexstack-sim-demo --mode visual_teleop --seconds 28)

Starts ``launch/sim_visual_teleop.launch.xml`` (auto-engage) as separate processes: sim_cell with the operator camera,
sim_hand playing the gesture script on the rendered hand, hand_pose (MediaPipe + depth), teleop (retargeting + arm
IK), safety_monitor. Watches the loop from this process over DDS for ``--seconds``, then writes
``runs/<time>/report.json`` + ``report.md`` (the figures of ``bench/visual_teleop.py`` on the live graph and the
verdict of :mod:`dexstack.teleop.evaluation`: the robot palm and fingers against teleoperation of the *true* hand),
``record.npz`` (what was observed, reloadable with ``VisualTeleopRecord.load``), an operator-camera snapshot and every
node's log. Exit code 0 only when the robot followed the hand and every node exited cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dexstack.rosenv import force_localhost_dds

OPERATOR_COLOR = "/operator_camera/camera/color/image_raw"


class LoopObserver:
    """Subscribes, in the demo's own node, to what the loop publishes; keeps it for :class:`VisualTeleopRecord`."""

    def __init__(self, node, description) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from dexstack.nodes import common
        from dexstack.nodes.safety_monitor import HAND_OUTPUT_STAMPED
        from dexstack.nodes.sim_hand import GT_TOPIC

        self.clock = node.get_clock()
        self.names = list(description.joints)
        self.lock = threading.Lock()
        self.keypoints: dict[int, np.ndarray | None] = {}
        self.gt: list[tuple[int, np.ndarray]] = []
        self.arm: dict[int, float] = {}
        self.hand: dict[int, float] = {}
        self.state_t: list[float] = []
        self.state_q: list[np.ndarray] = []
        self.diagnostics: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.last_color = None
        node.create_subscription(PoseArray, "/dexstack/hand_keypoints", self._on_kp, common.STATE_QOS)
        node.create_subscription(PoseArray, GT_TOPIC, self._on_gt, common.SENSOR_QOS)
        node.create_subscription(JointTrajectory, description.profile.arm.command.topic, self._on_arm,
                                 common.COMMAND_QOS)
        node.create_subscription(JointState, HAND_OUTPUT_STAMPED, self._on_hand, common.COMMAND_QOS)
        node.create_subscription(JointState, "/joint_states", self._on_state, common.STATE_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        latest = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        node.create_subscription(Image, OPERATOR_COLOR, self._on_color, latest)

    def _now_s(self) -> float:
        return self.clock.now().nanoseconds * 1e-9

    @staticmethod
    def _ns(stamp) -> int:
        from dexstack.nodes.common import stamp_to_ns  # rclpy loads after the DDS range is set

        return stamp_to_ns(stamp)

    @staticmethod
    def _points(msg) -> np.ndarray:
        from dexstack.nodes.common import points_from_pose_array

        return points_from_pose_array(msg)

    def _on_kp(self, msg) -> None:
        with self.lock:
            self.keypoints[self._ns(msg.header.stamp)] = self._points(msg) if len(msg.poses) == 21 else None

    def _on_gt(self, msg) -> None:
        if len(msg.poses) == 21:
            with self.lock:
                self.gt.append((self._ns(msg.header.stamp), self._points(msg)))

    def _on_arm(self, msg) -> None:
        s = self._ns(msg.header.stamp)
        with self.lock:
            if s > 0 and s not in self.arm:
                self.arm[s] = self._now_s()

    def _on_hand(self, msg) -> None:
        s = self._ns(msg.header.stamp)
        with self.lock:
            if s > 0 and s not in self.hand:
                self.hand[s] = self._now_s()

    def _on_state(self, msg) -> None:
        try:
            order = [list(msg.name).index(n) for n in self.names]
        except ValueError:
            return
        with self.lock:
            self.state_t.append(self._now_s())
            self.state_q.append(np.array(msg.position)[order])

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = (int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                             else int(status.level), status.message,
                                             {kv.key: kv.value for kv in status.values})

    def _on_color(self, msg) -> None:
        self.last_color = msg

    def record(self):
        from dexstack.teleop.evaluation import VisualTeleopRecord

        with self.lock:
            gt = sorted(self.gt, key=lambda item: item[0])
            return VisualTeleopRecord(
                dict(self.keypoints), np.array([s for s, _ in gt], dtype=np.int64),
                np.array([p for _, p in gt]).reshape(-1, 21, 3), dict(self.arm), dict(self.hand),
                np.array(self.state_t), np.array(self.state_q).reshape(len(self.state_t), len(self.names)))


def run(args: argparse.Namespace) -> int:
    force_localhost_dds()  # before rclpy loads
    os.environ.setdefault("MUJOCO_GL", "egl")
    import rclpy

    from dexstack.calibration import load_camera_calibration
    from dexstack.cli.demo import write_png
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.robot.description import load_description
    from dexstack.sim.config import load_cell_config
    from dexstack.teleop.evaluation import evaluate, verdict

    cell = load_cell_config(args.cell)
    if cell.operator_calibration is None or not cell.human_hand.enabled:
        print(f"[demo] cell '{cell.name}' has no rendered human hand or operator camera: use --cell tabletop_teleop")
        return 2
    calibration = load_camera_calibration(cell.operator_calibration)
    description = load_description(cell.robot_profile)
    run_dir = Path(args.output).resolve() / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ_visual_teleop")
    run_dir.mkdir(parents=True, exist_ok=True)
    launch = parse_launch_file("sim_visual_teleop", {"auto_engage": "true", "cell": cell.name,
                                                     "speed": str(args.speed),
                                                     "camera_rate_hz": str(args.camera_rate_hz),
                                                     "max_num_hands": str(args.max_num_hands)})
    rclpy.init()
    node = rclpy.create_node("dexstack_demo_visual_teleop")
    from dexstack.nodes.common import BackgroundSpin

    spinner = BackgroundSpin(node, name="visual-teleop-demo")
    observer = LoopObserver(node, description)
    graph = LaunchedGraph(launch, log_dir=run_dir / "logs").start()
    print(f"[demo] started {[n.name for n in graph.nodes]} (logs in {run_dir / 'logs'})")
    reasons: list[str] = []
    try:
        deadline = time.monotonic() + args.startup_timeout_s
        while time.monotonic() < deadline and not graph.failed() and not (
                "hand_pose" in observer.diagnostics and observer.state_t):
            time.sleep(0.2)
        if "hand_pose" not in observer.diagnostics or not observer.state_t:
            reasons.append(f"graph not up within {args.startup_timeout_s} s (hand_pose diagnostics: "
                           f"{'hand_pose' in observer.diagnostics}, /joint_states: {bool(observer.state_t)}); "
                           f"exited: {graph.failed()}")
        else:
            print(f"[demo] graph up; watching the robot follow the rendered hand for {args.seconds:.0f} s")
            end = time.monotonic() + args.seconds
            while time.monotonic() < end and not graph.failed():
                time.sleep(0.2)
    finally:
        record = observer.record()
        diagnostics = dict(observer.diagnostics)
        codes = graph.stop()
        spinner.close(destroy_nodes=False, shutdown_rclpy=False)
    record.save(run_dir / "record.npz")
    figures = evaluate(record, description, calibration.T_parent_camera, calibration.intrinsics)
    if not reasons:
        reasons = verdict(figures)
    for name, code in codes.items():
        if code != 0:
            log = next(n.log_path for n in graph.nodes if n.name == name)
            tail = log.read_text()[-1500:] if log and log.exists() else ""
            reasons.append(f"node {name} exited with {code}; end of its log:\n{tail}")
    outputs = {"run_dir": str(run_dir), "record": str(run_dir / "record.npz")}
    color = observer.last_color
    if color is not None and color.encoding == "rgb8":
        write_png(run_dir / "operator_camera.png",
                  np.frombuffer(color.data, np.uint8).reshape(color.height, color.width, 3))
        outputs["operator_camera_snapshot"] = str(run_dir / "operator_camera.png")
    report = {
        "mode": "visual_teleop", "ok": not reasons, "cell": cell.name, "robot_profile": description.profile.name,
        "seconds": args.seconds, "speed": args.speed, "camera_rate_hz": args.camera_rate_hz,
        "max_num_hands": args.max_num_hands,
        "figures": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()},
        "diagnostics": {k: {"level": v[0], "message": v[1]} for k, v in diagnostics.items()},
        "nodes": {n.name: {"exit_code": codes.get(n.name), "log": str(n.log_path)} for n in graph.nodes},
        "reasons": reasons, "outputs": outputs,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "report.md").write_text(markdown(report))
    print(markdown(report))
    node.destroy_node()
    rclpy.shutdown()
    return 0 if report["ok"] else 1


def markdown(report: dict) -> str:
    f = report["figures"]

    def g(key: str, fmt: str = ".1f") -> str:
        value = f.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else "n/a"

    lines = [
        f"# dexstack sim demo (visual teleop): {'OK' if report['ok'] else 'FAILED'}", "",
        f"- cell `{report['cell']}`, robot `{report['robot_profile']}`, {report['seconds']:.0f} s of the gesture "
        f"script at speed {report['speed']}, operator camera {report['camera_rate_hz']:.0f} Hz (live rendering)",
        "- nodes: " + ", ".join(f"{k} (exit {v['exit_code']})" for k, v in report["nodes"].items()),
        f"- perception: hand detected in {g('detection_rate', '.2f')} of {f.get('frames_in_view')} frames with the "
        f"hand in view; keypoint error {g('keypoint_err_mm_median')} mm median, {g('keypoint_err_mm_p90')} mm p90",
        f"- loop: {g('loop_hz')} Hz while tracked ({f.get('traced_arm_commands')} driver commands traced to their "
        f"camera frame, {f.get('tracked_segments')} tracked segments); camera -> driver latency arm "
        f"{g('latency_ms_p50', '.0f')} / {g('latency_ms_p99', '.0f')} ms (p50/p99), hand "
        f"{g('hand_latency_ms_p50', '.0f')} / {g('hand_latency_ms_p99', '.0f')} ms",
        f"- following (vs teleop of the true hand): palm {g('palm_err_mm_median')} mm median (lag "
        f"{g('palm_lag_s', '.2f')} s), palm travel {g('palm_travel_mm', '.0f')} of "
        f"{g('expected_palm_travel_mm', '.0f')} mm; fingertips {g('fingertip_err_mm_median')} mm median; hand joints "
        f"moved {g('hand_travel_rad', '.2f')} rad",
    ]
    lines += [f"- {key}: {value}" for key, value in report["outputs"].items()]
    lines += [f"- FAILED: {reason}" for reason in report["reasons"]]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--mode visual_teleop")
    group.add_argument("--seconds", type=float, default=28.0,
                       help="how long to watch the loop (the gesture script lasts 27.5 s at speed 1)")
    group.add_argument("--speed", type=float, default=1.0, help="gesture script playback speed")
    group.add_argument("--camera-rate-hz", type=float, default=15.0,
                       help="operator camera rate (live rendering costs ~50 ms a frame here)")
    group.add_argument("--max-num-hands", type=int, default=2, choices=(1, 2),
                       help="hand_pose's MediaPipe hands: 1 skips palm detection while tracking (faster; a second "
                       "hand is then not reported)")
