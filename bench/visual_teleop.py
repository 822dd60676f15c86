"""Visual teleoperation end to end: rendered human hand -> camera -> MediaPipe + depth -> teleop -> safety monitor.

    .venv/bin/python bench/visual_teleop.py --seconds 27.5 --live-seconds 30

1. Renders the gesture script (``dexstack.teleop.scripted_hand.GESTURES``) at 30 Hz in the operator camera of the
   ``tabletop_teleop`` cell, offline, with the exact ground-truth keypoints of every frame.
2. Replays the frames at 30 Hz (this file with ``--publisher``, stamped at publish time like a camera's capture
   stamp) to the launch file's graph in separate processes over real DDS: ``hand_pose`` (remapped to the operator
   camera) -> ``teleop`` (auto-engage) -> ``safety_monitor`` -> ``sim_cell`` (physics; no rendering), so the
   simulator's rendering cost is not charged to the loop.
3. With ``--live-seconds`` > 0, also runs ``sim_visual_teleop`` as launched (sim_hand + live rendering) and reports
   its figures under ``live_*``.

Prints ONE JSON line. Definitions:
- ``detection_rate``: frames hand_pose answered with a hand / frames it answered where the ground-truth hand is fully
  in view (all 21 keypoints >= 5 px inside the image); ``frames_answered_rate``: answered / published frames;
- ``keypoint_err_mm_median`` / ``_p90``: 3-D error of all 21 keypoints in the base frame vs ground truth (joint
  centres) over detected frames;
- ``loop_hz``: distinct camera stamps reaching the driver's arm command per second while tracked (over the tracked
  segments: stretches without a gap longer than teleop's hand-lost timeout, 0.3 s);
- ``latency_ms_p50`` / ``_p99``: camera stamp -> first driver arm command carrying it (the safety monitor keeps
  the stamp), received by this process; ``hand_latency_ms_*`` the same for the hand driver command (its stamped
  mirror on ``/dexstack/safety/hand_command_stamped``);
- ``fingertip_err_mm_median``: robot fingertips in the palm frame, FK of the measured hand joints 0.1 s after the
  frame, vs FK of the retargeting (same config and method as teleop) of the ground-truth keypoints of that frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dexstack.rosenv import force_localhost_dds  # noqa: E402

os.environ.setdefault("MUJOCO_GL", "egl")
CELL = "tabletop_teleop"
NS = "/operator_camera/camera"
RATE_HZ = 30.0
MARGIN_PX = 5.0


# ---------------------------------------------------------------------- 1. render
def render(seconds: float, work: Path) -> dict:
    from dexstack.sim import SimCell
    from dexstack.sim.camera import SimCamera
    from dexstack.teleop.scripted_hand import GestureScript
    from dexstack.transforms import make_transform, rpy_to_matrix

    cell = SimCell(CELL)
    camera = SimCamera(cell, camera=cell.operator_camera)
    hh = cell.cell.human_hand
    script = GestureScript(make_transform(hh.rest_xyz_m, rpy_to_matrix(hh.rest_rpy_rad)))
    n = int(seconds * RATE_HZ)
    i = cell.operator_calibration.intrinsics
    colors = np.lib.format.open_memmap(work / "color.npy", "w+", np.uint8, (n, i.height, i.width, 3))
    depths = np.lib.format.open_memmap(work / "depth.npy", "w+", np.uint16, (n, i.height, i.width))
    gt = np.zeros((n, 21, 3))
    t0 = time.perf_counter()
    for k in range(n):
        T, q, _ = script(k / RATE_HZ)
        cell.set_human_hand(T, q)
        image = camera.render()
        colors[k], depths[k] = image.color_rgb8, image.depth_mm
        gt[k] = camera.keypoints()
    render_ms = 1000.0 * (time.perf_counter() - t0) / n
    camera.close()
    colors.flush()
    depths.flush()
    np.save(work / "gt.npy", gt)
    return {"frames": n, "render_ms": render_ms, "in_view": in_view(gt, cell.operator_calibration)}


def in_view(gt: np.ndarray, calibration) -> np.ndarray:
    """(N,) True where all 21 ground-truth keypoints project inside the image (with a margin)."""
    T_cam_base = np.linalg.inv(calibration.T_parent_camera)
    p = gt @ T_cam_base[:3, :3].T + T_cam_base[:3, 3]
    i = calibration.intrinsics
    u = i.fx * p[..., 0] / p[..., 2] + i.cx
    v = i.fy * p[..., 1] / p[..., 2] + i.cy
    ok = ((p[..., 2] > 0.1) & (u >= MARGIN_PX) & (u < i.width - MARGIN_PX)
          & (v >= MARGIN_PX) & (v < i.height - MARGIN_PX))
    return ok.all(axis=1)


# ---------------------------------------------------------------------- 2. replay publisher (subprocess)
def publisher(work: Path, start_delay_s: float) -> None:
    import rclpy
    from sensor_msgs.msg import CameraInfo, Image

    from dexstack.calibration import load_camera_calibration
    from dexstack.nodes import common
    from dexstack.nodes.camera_info import camera_info_msg

    colors = np.load(work / "color.npy", mmap_mode="r")
    depths = np.load(work / "depth.npy", mmap_mode="r")
    cal = load_camera_calibration(load_cell_config_operator())
    rclpy.init()
    node = rclpy.create_node("bench_visual_teleop_camera")
    color_pub = node.create_publisher(Image, f"{NS}/color/image_raw", common.SENSOR_QOS)
    depth_pub = node.create_publisher(Image, f"{NS}/aligned_depth_to_color/image_raw", common.SENSOR_QOS)
    info_pub = node.create_publisher(CameraInfo, f"{NS}/aligned_depth_to_color/camera_info", common.SENSOR_QOS)
    time.sleep(start_delay_s)
    log = []
    h, w = depths.shape[1:]
    next_t = time.monotonic()
    for k in range(len(colors)):
        color_bytes, depth_bytes = colors[k].tobytes(), depths[k].tobytes()  # "the camera's transfer"
        stamp = node.get_clock().now()
        color = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w, data=color_bytes)
        depth = Image(height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w, data=depth_bytes)
        for img in (color, depth):
            img.header.stamp = stamp.to_msg()
            img.header.frame_id = cal.frame_id
        color_pub.publish(color)
        depth_pub.publish(depth)
        info_pub.publish(camera_info_msg(cal.intrinsics, stamp.to_msg(), cal.frame_id))
        log.append((stamp.nanoseconds, k))
        next_t += 1.0 / RATE_HZ
        time.sleep(max(0.0, next_t - time.monotonic()))
    (work / "published.json").write_text(json.dumps(log))
    node.destroy_node()
    rclpy.shutdown()


def load_cell_config_operator() -> str:
    from dexstack.sim.config import load_cell_config

    return load_cell_config(CELL).operator_calibration


# ---------------------------------------------------------------------- observation of the loop
class Observer:
    """Subscribes hand_pose's keypoints, the driver's arm commands, the joint states and the ground truth."""

    def __init__(self, node, description) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from dexstack.nodes import common
        from dexstack.nodes.safety_monitor import HAND_OUTPUT_STAMPED

        self.keypoints: dict[int, np.ndarray | None] = {}
        self.driver: dict[int, float] = {}  # stamp_ns -> first arrival (ROS time, s)
        self.hand_driver: dict[int, float] = {}
        self.states: list[tuple[float, np.ndarray]] = []
        self.gt: list[tuple[int, np.ndarray]] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.process_ms: list[float] = []
        self.names = list(description.joints)
        self.clock = node.get_clock()
        node.create_subscription(PoseArray, "/dexstack/hand_keypoints", self._on_kp, common.STATE_QOS)
        node.create_subscription(PoseArray, "/dexstack/sim/hand_keypoints_gt", self._on_gt, common.SENSOR_QOS)
        node.create_subscription(JointTrajectory, description.profile.arm.command.topic, self._on_driver,
                                 common.COMMAND_QOS)
        node.create_subscription(JointState, "/joint_states", self._on_state, common.STATE_QOS)
        node.create_subscription(JointState, HAND_OUTPUT_STAMPED, self._on_hand_driver, common.COMMAND_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = values
            if status.name == "hand_pose" and int(values.get("frames", "0")) > 0:
                self.process_ms.append(float(values["process_ms"]))

    @staticmethod
    def _ns(stamp) -> int:
        from dexstack.nodes.common import stamp_to_ns  # rclpy loads after the DDS range is set

        return stamp_to_ns(stamp)

    @staticmethod
    def _points(msg) -> np.ndarray:
        from dexstack.nodes.common import points_from_pose_array

        return points_from_pose_array(msg)

    def _on_kp(self, msg) -> None:
        self.keypoints[self._ns(msg.header.stamp)] = self._points(msg) if len(msg.poses) == 21 else None

    def _on_gt(self, msg) -> None:
        if len(msg.poses) == 21:
            self.gt.append((self._ns(msg.header.stamp), self._points(msg)))

    def _on_driver(self, msg) -> None:
        now = self.clock.now().nanoseconds * 1e-9
        s = self._ns(msg.header.stamp)
        if s > 0 and s not in self.driver:
            self.driver[s] = now

    def _on_hand_driver(self, msg) -> None:
        s = self._ns(msg.header.stamp)
        if s > 0 and s not in self.hand_driver:
            self.hand_driver[s] = self.clock.now().nanoseconds * 1e-9

    def _on_state(self, msg) -> None:
        order = [list(msg.name).index(n) for n in self.names]
        self.states.append((self.clock.now().nanoseconds * 1e-9, np.array(msg.position)[order]))


def start_graph(work: Path, live: bool, hand_pose: dict[str, str]):
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file

    description = parse_launch_file("sim_visual_teleop", {"auto_engage": "true"})
    for n in description.nodes:
        if n.name == "hand_pose":
            n.params.update(hand_pose)
    if not live:  # the replay is the camera: no sim_hand, no rendering in sim_cell
        description.nodes = [n for n in description.nodes if n.name != "sim_hand"]
        for n in description.nodes:
            if n.name == "sim_cell":
                n.params["operator_camera_rate_hz"] = "0.0"
    return LaunchedGraph(description, log_dir=work / ("live_logs" if live else "logs")).start()


def metrics(obs: Observer, frames: dict[int, int], gt: dict[int, np.ndarray], view: dict[int, bool], description,
            n_published: int) -> dict:
    """Figures of one run. ``frames``: camera stamp -> frame index; ``gt`` / ``view`` by frame index."""
    from dexstack.perception.hand import FINGERTIPS
    from dexstack.retarget import HandRetargeter
    from dexstack.retarget.keypoints import hand_frame_from_keypoints
    from dexstack.teleop.evaluation import tracked_segments

    answered = [s for s in obs.keypoints if s in frames]
    in_view_answered = [s for s in answered if view[frames[s]]]
    detected = [s for s in in_view_answered if obs.keypoints[s] is not None]
    errors = np.concatenate([np.linalg.norm(obs.keypoints[s] - gt[frames[s]], axis=1) for s in detected]) \
        if detected else np.array([np.nan])
    lat = np.array([obs.driver[s] - s * 1e-9 for s in obs.driver if s in frames])
    hand_lat = np.array([obs.hand_driver[s] - s * 1e-9 for s in obs.hand_driver if s in frames])
    segments = tracked_segments(sorted(s for s in obs.driver if s in frames), 0.3)
    span_s = sum((seg[-1] - seg[0]) * 1e-9 for seg in segments)
    # Fingertips: what perception costs the user, in the palm frame (the arm's own tracking error excluded).
    retargeter = HandRetargeter.from_file("allegro_right", "dexpilot", description)
    links = [retargeter.config.keypoint_links[i] for i in FINGERTIPS if retargeter.config.keypoint_links[i]]
    n_arm = len(description.arm_joints)
    state_t = np.array([t for t, _ in obs.states]) if obs.states else np.zeros(0)
    fingertip = []
    for s in sorted(obs.driver):
        if s not in frames or not view[frames[s]] or not len(state_t):
            continue
        kp = gt[frames[s]]
        T = hand_frame_from_keypoints(kp)
        q_ref = retargeter.retarget((kp - T[:3, 3]) @ T[:3, :3])
        k = int(np.searchsorted(state_t, s * 1e-9 + 0.1))
        if k >= len(state_t):
            continue
        q_meas = obs.states[k][1][n_arm:]
        p_ref = retargeter.hand.link_positions(q_ref, links)
        p_meas = retargeter.hand.link_positions(q_meas, links)
        fingertip.extend(np.linalg.norm(p_ref - p_meas, axis=1))
    return {
        "detection_rate": len(detected) / max(1, len(in_view_answered)),
        "frames_answered_rate": len(answered) / max(1, n_published),
        "frames_in_view": int(sum(view[frames[s]] for s in answered)),
        "keypoint_err_mm_median": float(1000 * np.median(errors)),
        "keypoint_err_mm_p90": float(1000 * np.percentile(errors, 90)),
        "loop_hz": sum(len(seg) - 1 for seg in segments) / span_s if span_s > 0 else 0.0,
        "latency_ms_p50": float(1000 * np.percentile(lat, 50)) if len(lat) else float("nan"),
        "latency_ms_p99": float(1000 * np.percentile(lat, 99)) if len(lat) else float("nan"),
        "hand_latency_ms_p50": float(1000 * np.percentile(hand_lat, 50)) if len(hand_lat) else float("nan"),
        "hand_latency_ms_p99": float(1000 * np.percentile(hand_lat, 99)) if len(hand_lat) else float("nan"),
        "fingertip_err_mm_median": float(1000 * np.median(fingertip)) if fingertip else float("nan"),
        "hand_pose_ms_median": float(np.median(obs.process_ms)) if obs.process_ms else float("nan"),
    }


def run(seconds: float, live_seconds: float, hand_pose: dict[str, str]) -> dict:
    force_localhost_dds()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    import rclpy

    from dexstack.nodes.common import BackgroundSpin
    from dexstack.robot import load_description

    work = Path(tempfile.mkdtemp(prefix="bench_visual_teleop_"))
    rendered = render(seconds, work)
    gt_all = np.load(work / "gt.npy")
    view_all = rendered["in_view"]
    description = load_description("panda_allegro")
    rclpy.init()
    node = rclpy.create_node("bench_visual_teleop")
    spinner = BackgroundSpin(node)
    result: dict = {}
    try:
        obs = Observer(node, description)
        graph = start_graph(work, live=False, hand_pose=hand_pose)
        deadline = time.monotonic() + 120.0
        while "hand_pose" not in obs.diagnostics and time.monotonic() < deadline:  # MediaPipe loaded
            time.sleep(0.2)
        log = open(work / "publisher.log", "w")  # noqa: SIM115
        pub = subprocess.Popen([sys.executable, __file__, "--publisher", str(work), "--start-delay", "2.0"],
                               env=graph.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            pub.wait(timeout=seconds + 120)
            time.sleep(1.0)
        finally:
            graph.stop()
        published = json.loads((work / "published.json").read_text())
        frames = {s: k for s, k in published}
        result = metrics(obs, frames, dict(enumerate(gt_all)), dict(enumerate(view_all)), description,
                         len(published))
        result.update(frames=len(published), render_ms=round(rendered["render_ms"], 1),
                      **{k: yaml.safe_load(v) for k, v in hand_pose.items()})
        if live_seconds > 0:
            live = Observer(node, description)
            graph = start_graph(work, live=True, hand_pose=hand_pose)
            try:
                deadline = time.monotonic() + 120.0
                while "hand_pose" not in live.diagnostics and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(live_seconds)
            finally:
                graph.stop()
            result.update({f"live_{k}": v for k, v in live_metrics(live, description).items()})
    finally:
        spinner.close()
        shutil.rmtree(work, ignore_errors=True)
    return result


def live_metrics(obs: Observer, description) -> dict:
    """The live graph: ground truth from sim_hand (stamped when the hand was placed; the image is rendered up to
    one camera period later), matched to each camera frame by the latest ground truth at or before its stamp."""
    from dexstack.calibration import load_camera_calibration

    cal = load_camera_calibration(load_cell_config_operator())
    if not obs.gt or not obs.keypoints:
        return {"frames": 0}
    gt_stamps = np.array([s for s, _ in obs.gt])
    frames, gt, view = {}, {}, {}
    for i, s in enumerate(sorted(obs.keypoints)):
        k = int(np.searchsorted(gt_stamps, s, side="right")) - 1
        if k < 0:
            continue
        frames[s] = i
        gt[i] = obs.gt[k][1]
        view[i] = bool(in_view(gt[i][None], cal)[0])
    out = metrics(obs, frames, gt, view, description, len(frames))
    out["frames"] = len(frames)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=27.5, help="replayed duration (one gesture script: 27.5)")
    parser.add_argument("--live-seconds", type=float, default=30.0, help="live-render run (0: skip)")
    parser.add_argument("--model-complexity", type=int, default=1, choices=(0, 1),
                        help="hand_pose's MediaPipe model: 0 lite, 1 full (the launch file's)")
    parser.add_argument("--inference-scale", type=float, default=1.0,
                        help="hand_pose's inference_scale (MediaPipe sees the image scaled by this)")
    parser.add_argument("--static-image-mode", action="store_true",
                        help="hand_pose detects the palm in every frame (no MediaPipe tracking)")
    parser.add_argument("--max-num-hands", type=int, default=None,
                        help="hand_pose's max_num_hands (default: the launch file's; MediaPipe runs its palm "
                        "detector on every frame while it tracks fewer hands than this)")
    parser.add_argument("--publisher", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start-delay", type=float, default=8.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher is not None:
        publisher(args.publisher, args.start_delay)
        return
    hand_pose = {"model_complexity": str(args.model_complexity), "inference_scale": str(args.inference_scale),
                 "static_image_mode": str(args.static_image_mode).lower()}
    if args.max_num_hands is not None:
        hand_pose["max_num_hands"] = str(args.max_num_hands)
    result = run(args.seconds, args.live_seconds, hand_pose)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
