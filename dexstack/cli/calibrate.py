"""dexstack-calibrate: hand-eye calibration of the camera against the robot; writes calibration/<cell>/camera.yaml.

    dexstack-launch sim_calibrate &             # sim cell with a bumped camera + safety monitor
    dexstack-calibrate --calibration sim_tabletop --target charuco_5x5_40mm --samples 16

Moves the arm through generated poses that keep the board in view (commands go to the safety monitor's input
``/dexstack/arm/command``, never to the drivers), detects the board in each settled frame, solves (OpenCV closed forms
+ joint reprojection refinement), prints a summary table and writes the calibration file (the old one is kept as a
dated backup). ``--manual``: you move the robot (teleop, hand guiding); Enter records a sample, ``s`` + Enter solves.
On any failure (target never visible, too few samples, degenerate motions, wrong board size) it says why and leaves
the calibration file untouched (exit code 2). ``--print-target board.png`` writes the printable board and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from dexstack.calibration.camera import (
    CalibrationError,
    CameraCalibration,
    calibration_path,
    load_camera_calibration,
    save_camera_calibration,
)
from dexstack.calibration.handeye import HandEyeError, HandEyeResult, Sample, SolveConfig, pose_difference, solve
from dexstack.calibration.poses import PoseConfig, PoseGenerationError, Setup, coverage_of, generate_poses
from dexstack.calibration.target import DetectionLimits, TargetDetector, TargetError, load_target
from dexstack.camera_model import CameraModel
from dexstack.paths import data_path

EXIT_FAILED = 2


@dataclass
class Frame:
    stamp_ns: int
    rgb: np.ndarray
    depth_m: np.ndarray | None
    camera: CameraModel | None


class RosIO:
    """The ROS side: joint states, camera images, and arm commands to the safety monitor. Spins in a thread."""

    def __init__(self, arm_joints: tuple[str, ...], all_joints: tuple[str, ...], camera_ns: str, command_topic: str):
        import os

        from dexstack.rosenv import force_localhost_dds

        if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ:  # a workstation that chose a range keeps it
            force_localhost_dds()
        import rclpy
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from dexstack.nodes import common

        self._rclpy, self._JointTrajectory = rclpy, JointTrajectory
        rclpy.init()
        self.node = rclpy.create_node("calibrate")
        self.arm_joints, self.all_joints = arm_joints, all_joints
        self._lock = threading.Lock()
        self.q: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.q_stamp_ns = 0
        self.info: CameraModel | None = None
        self._depth: tuple[int, np.ndarray] | None = None
        self.frame: Frame | None = None
        n = self.node
        n.create_subscription(JointState, "/joint_states", self._on_joints, common.STATE_QOS)
        n.create_subscription(Image, f"{camera_ns}/color/image_raw", self._on_color, common.SENSOR_QOS)
        n.create_subscription(Image, f"{camera_ns}/aligned_depth_to_color/image_raw", self._on_depth,
                              common.SENSOR_QOS)
        n.create_subscription(CameraInfo, f"{camera_ns}/color/camera_info", self._on_info, common.SENSOR_QOS)
        self.arm_pub = n.create_publisher(JointTrajectory, command_topic, common.COMMAND_QOS)
        from dexstack.nodes.safety_link import SafetyLink

        self.rejection: str | None = None  # the safety monitor's last refusal of an arm command
        self.safety = SafetyLink(n, self._on_rejected)
        self._spinner = common.BackgroundSpin(n, name="calibrate")

    def _on_rejected(self, msg) -> None:
        if msg.name.endswith("arm"):  # "safety_monitor/arm"
            self.rejection = msg.message

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_joints(self, msg) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        if not all(j in index for j in self.all_joints):
            return
        q = np.array([msg.position[index[j]] for j in self.all_joints])
        v = np.array([msg.velocity[index[j]] if len(msg.velocity) == len(msg.name) else 0.0 for j in self.all_joints])
        with self._lock:
            self.q, self.v, self.q_stamp_ns = q, v, self.now_ns()

    def _on_info(self, msg) -> None:
        if msg.width > 0 and msg.k[0] > 0:
            try:
                self.info = CameraModel.from_camera_info(msg)
            except ValueError:  # malformed camera_info: the calibration file's intrinsics are used instead
                pass

    def _on_depth(self, msg) -> None:
        from dexstack.image_codec import depth_to_array
        from dexstack.nodes.common import stamp_to_ns

        depth = depth_to_array(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))
        with self._lock:
            self._depth = (stamp_to_ns(msg.header.stamp), depth)

    def _on_color(self, msg) -> None:
        from dexstack.image_codec import color_to_rgb8
        from dexstack.nodes.common import stamp_to_ns

        stamp = stamp_to_ns(msg.header.stamp)
        rgb = color_to_rgb8(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        with self._lock:
            depth = None
            if self._depth is not None and abs(self._depth[0] - stamp) < 20_000_000:
                d = self._depth[1].astype(np.float32) * 0.001
                d[self._depth[1] == 0] = np.nan
                depth = d
            self.frame = Frame(stamp, rgb, depth, self.info)

    def state(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        with self._lock:
            return (None, None) if self.q is None else (self.q.copy(), self.v.copy())

    def wait_frame_after(self, stamp_ns: int, timeout_s: float) -> Frame | None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                f = self.frame
            if f is not None and f.stamp_ns > stamp_ns and (f.depth_m is not None or time.monotonic() > end - 1):
                return f
            time.sleep(0.02)
        return None

    def send_arm(self, q_arm: np.ndarray, duration_s: float) -> None:
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectoryPoint

        msg = self._JointTrajectory()
        msg.joint_names = list(self.arm_joints)
        sec = int(duration_s)
        msg.points = [JointTrajectoryPoint(positions=[float(x) for x in q_arm],
                                           time_from_start=Duration(sec=sec, nanosec=int((duration_s - sec) * 1e9)))]
        self.arm_pub.publish(msg)

    def close(self) -> None:
        self._spinner.close()


def workspace_box(safety_config: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The safety monitor's workspace box from its parameter YAML (calibration poses stay inside it)."""
    path = Path(safety_config)
    if not path.is_absolute() and not path.exists():
        path = data_path(*path.parts)  # relative to the package data (config/safety.yaml)
    try:
        raw = yaml.safe_load(path.read_text())["safety_monitor"]["ros__parameters"]
        return tuple(raw["workspace_min_m"]), tuple(raw["workspace_max_m"])
    except (OSError, KeyError, TypeError) as exc:
        raise CalibrationError(f"cannot read the workspace box from {path}: {exc!r}") from exc


def collect(args, io: RosIO, kin, setup: Setup, detector: TargetDetector, console) -> tuple[list[Sample], dict]:
    """Move (or let the user move) the robot, detect the board, return the usable samples and rejection counts."""
    from rich.progress import BarColumn, Progress, TextColumn

    n_arm = len(io.arm_joints)
    rejected: dict[str, int] = {}
    samples: list[Sample] = []
    t0 = time.monotonic()
    while io.state()[0] is None or io.frame is None:
        if time.monotonic() - t0 > args.wait_s:
            missing = "/joint_states" if io.state()[0] is None else f"camera images on {args.camera_ns}/color"
            raise HandEyeError(f"no {missing} after {args.wait_s:.0f} s: is the robot/camera (or sim) running?")
        time.sleep(0.05)

    def capture(q_cmd: np.ndarray | None) -> str:
        settle_ns = io.now_ns()
        frame = io.wait_frame_after(settle_ns + int(0.15e9), 3.0)
        if frame is None:
            return "no camera frame after the robot settled"
        q, _ = io.state()
        camera = frame.camera or setup.camera
        det = detector.detect(frame.rgb, camera, frame.depth_m)
        if not det.ok:
            return det.reason
        samples.append(Sample(kin.frame_pose(q, setup.link), det.image_points_px, det.object_points_m,
                              det.T_camera_board))
        return ""

    def note(why: str, progress, task) -> None:
        if why:
            rejected[why.split(":")[0]] = rejected.get(why.split(":")[0], 0) + 1
            progress.console.print(f"[yellow]view rejected[/]: {why}")
        cov = coverage_of([s.T_base_link[:3, :3] for s in samples])
        progress.update(task, advance=1, description=f"samples {len(samples)}/{args.samples}  axes coverage "
                                                     f"{cov[1]:.2f}/{cov[2]:.2f}")

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} views"),
                  console=console, transient=False) as progress:
        if args.manual:
            task = progress.add_task("samples 0", total=None)
            progress.console.print("Move the robot so the board is seen from a new angle, then press Enter "
                                   "(s + Enter: solve, q + Enter: quit).")
            while True:
                line = sys.stdin.readline()
                key = line.strip().lower()
                if key == "q":
                    raise HandEyeError("stopped by the user before solving")
                if key == "s" or line == "":  # "" = end of input: solve with what we have
                    break
                note(capture(None), progress, task)
            return samples, rejected
        t0 = time.monotonic()
        while not io.safety.ready:  # commands sent before the gate is ready would be dropped
            if time.monotonic() - t0 > args.wait_s:
                raise HandEyeError(f"the safety monitor is not ready after {args.wait_s:.0f} s (is it running? "
                                   "calibration moves the robot only through it)")
            time.sleep(0.05)
        q_start, _ = io.state()
        poses = generate_poses(kin, setup, q_start, PoseConfig(
            n_poses=args.samples + args.extra_poses, seed=args.seed, workspace_min_m=args.workspace[0],
            workspace_max_m=args.workspace[1]))
        task = progress.add_task("samples 0", total=len(poses))
        for q_goal in poses:
            q_now, _ = io.state()
            duration = max(args.min_move_s, float(np.abs(q_goal[:n_arm] - q_now[:n_arm]).max()) / args.speed_rad_s)
            # The safety monitor holds when its input stream goes stale past a trajectory's end, so the goal is
            # re-sent at 20 Hz (each message replaces the last, ending at the same time) until the arm settles.
            t_arrive = time.monotonic() + duration
            end = t_arrive + 5.0
            reached = False
            io.rejection = None
            while time.monotonic() < end and io.rejection is None:
                io.send_arm(q_goal[:n_arm], max(t_arrive - time.monotonic(), 0.3))
                q, v = io.state()
                if np.abs(q[:n_arm] - q_goal[:n_arm]).max() < 0.005 and np.abs(v[:n_arm]).max() < 0.01:
                    reached = True
                    break
                time.sleep(0.05)
            time.sleep(args.settle_s)
            if io.rejection is not None:
                why = f"pose refused by the safety monitor: {io.rejection}"
            else:
                why = capture(q_goal) if reached else "pose not reached (the safety monitor held or clipped it)"
            note(why, progress, task)
            if len(samples) >= args.samples:
                break
    return samples, rejected


def summary(console, result: HandEyeResult, old: CameraCalibration, new_T: np.ndarray, n_views: int,
            rejected: dict, seconds: float) -> None:
    from rich.table import Table

    t = Table(title="Hand-eye calibration", show_lines=False)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    xyz = new_T[:3, 3]
    dt, dr = pose_difference(new_T, old.T_parent_camera)
    for name, value in [
        ("mode", result.mode), ("samples used / views", f"{len(result.per_sample_rms_px) - len(result.outliers)} / "
                                                        f"{n_views}"),
        ("best closed form (seed)", result.method),
        ("reprojection RMS", f"{result.reproj_px_rms:.3f} px"),
        ("bootstrap spread", f"{result.bootstrap_trans_mm_std:.2f} mm, {result.bootstrap_rot_deg_std:.3f} deg"),
        ("rotation-axis coverage", " / ".join(f"{c:.2f}" for c in result.rotation_coverage)),
        ("camera xyz (m)", " ".join(f"{x:+.4f}" for x in xyz)),
        ("change vs old file", f"{dt:.1f} mm, {dr:.2f} deg"),
        ("outlier samples", ", ".join(map(str, result.outliers)) or "none"),
        ("rejected views", ", ".join(f"{k} ({v})" for k, v in rejected.items()) or "none"),
        ("time", f"{seconds:.1f} s"),
    ]:
        t.add_row(name, str(value))
    console.print(t)
    m = Table(title="closed forms (reprojection RMS before refinement)")
    for name in result.closed_forms:
        m.add_column(name, justify="right")
    m.add_row(*[f"{v:.2f} px" for v in result.closed_forms.values()])
    console.print(m)
    per = Table(title="per-sample reprojection RMS (px)")
    per.add_column("sample")
    per.add_column("rms", justify="right")
    for i, e in enumerate(result.per_sample_rms_px):
        per.add_row(str(i), f"{e:.3f}" + (" outlier" if i in result.outliers else ""))
    console.print(per)
    if result.refined_camera is not None:
        ref, cam = result.refined_camera, old.intrinsics
        it = Table(title="intrinsics: file vs refined from these samples")
        for c in ("", "fx", "fy", "cx", "cy"):
            it.add_column(c, justify="right")
        it.add_row("file", *(f"{getattr(cam, k):.2f}" for k in ("fx", "fy", "cx", "cy")))
        it.add_row("refined", *(f"{getattr(ref, k):.2f}" for k in ("fx", "fy", "cx", "cy")))
        console.print(it)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dexstack-calibrate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--calibration", default="sim_tabletop", help="calibration/<name>/camera.yaml (or a path) to update")
    p.add_argument("--output", default=None, help="write here instead of the calibration file itself")
    p.add_argument("--target", default="charuco_5x5_40mm", help="config/calibration_targets/<name>.yaml or a path")
    p.add_argument("--mode", choices=("eye_to_hand", "eye_in_hand"), default="eye_to_hand")
    p.add_argument("--robot-profile", default="panda_allegro")
    p.add_argument("--samples", type=int, default=16, help="usable samples to collect")
    p.add_argument("--extra-poses", type=int, default=4, help="spare poses for rejected views")
    p.add_argument("--min-samples", type=int, default=6)
    p.add_argument("--manual", action="store_true", help="record a sample on Enter while you move the robot")
    p.add_argument("--refine-intrinsics", action="store_true", help="also write the refined fx, fy, cx, cy")
    p.add_argument("--dry-run", action="store_true", help="solve and report, write nothing")
    p.add_argument("--safety-config", default="config/safety.yaml", help="the workspace box comes from here")
    p.add_argument("--camera-ns", default="/camera/camera")
    p.add_argument("--command-topic", default="/dexstack/arm/command", help="the safety monitor's arm input")
    p.add_argument("--speed-rad-s", type=float, default=0.5)
    p.add_argument("--min-move-s", type=float, default=1.0)
    p.add_argument("--settle-s", type=float, default=0.3)
    p.add_argument("--wait-s", type=float, default=20.0)
    p.add_argument("--bootstrap", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print one JSON line with the result")
    p.add_argument("--print-target", metavar="PNG", default=None, help="write the board image and exit")
    return p.parse_args(argv)


def run(args: argparse.Namespace, console) -> dict:
    """The calibration run; returns the result record. Raises the *Error types with the cause."""
    from dexstack.robot.description import load_description
    from dexstack.robot.kinematics import Kinematics

    t_start = time.monotonic()
    target = load_target(args.target)
    old = load_camera_calibration(args.calibration)
    out_path = Path(args.output) if args.output else calibration_path(args.calibration)
    description = load_description(args.robot_profile)
    kin = Kinematics(description)
    link = target.mount.link if args.mode == "eye_to_hand" else old.parent_frame
    if args.mode == "eye_to_hand" and old.parent_frame != description.base_frame:
        raise CalibrationError(f"eye_to_hand: the file's parent_frame '{old.parent_frame}' must be the robot base "
                               f"'{description.base_frame}'")
    if args.mode == "eye_in_hand" and target.mount.link != description.base_frame:
        raise TargetError(f"eye_in_hand: the board is fixed in the world, so its mount link must be the robot base "
                          f"'{description.base_frame}' (the target file says '{target.mount.link}')")
    kin.frame_id(link)  # fails early with the frame's name
    T_other = target.mount.T_link_board  # eye_in_hand: the target YAML's mount is the board's pose in the base
    setup = Setup(args.mode, old.T_parent_camera, T_other, link, old.intrinsics, target)
    detector = TargetDetector(target, DetectionLimits())
    args.workspace = workspace_box(args.safety_config)
    io = RosIO(description.arm_joints, description.joints, args.camera_ns, args.command_topic)
    try:
        samples, rejected = collect(args, io, kin, setup, detector, console)
        camera = io.info or old.intrinsics
    finally:
        io.close()
    return solve_and_write(args, samples, rejected, old, camera, out_path, console, t_start)


def solve_and_write(args: argparse.Namespace, samples: list[Sample], rejected: dict[str, int],
                    old: CameraCalibration, camera: CameraModel, out_path: Path, console, t_start: float) -> dict:
    """Solve, report, then write (only after everything succeeded: any error leaves the file untouched)."""
    n_views = len(samples) + sum(rejected.values())
    if not samples:
        raise HandEyeError(f"target never usable in {n_views} views: " + (", ".join(
            f"{k} ({v})" for k, v in rejected.items()) or "no views"))
    result = solve(args.mode, samples, camera, SolveConfig(
        min_samples=args.min_samples, bootstrap=args.bootstrap, refine_intrinsics=True, seed=args.seed))
    seconds = time.monotonic() - t_start
    new_cal = replace(old, T_parent_camera=result.T_parent_camera,
                      intrinsics=result.refined_camera if args.refine_intrinsics else old.intrinsics)
    summary(console, result, old, result.T_parent_camera, n_views, rejected, seconds)
    backup = None
    if not args.dry_run:
        backup = save_camera_calibration(new_cal, out_path)
        console.print(f"wrote {out_path}" + (f" (previous kept as {backup})" if backup else ""))
    return {"T_parent_camera": result.T_parent_camera.tolist(), "T_other_board": result.T_other_board.tolist(),
            "reproj_px_rms": result.reproj_px_rms, "samples": len(samples) - len(result.outliers),
            "views": n_views, "outliers": result.outliers, "method": result.method,
            "bootstrap_trans_mm_std": result.bootstrap_trans_mm_std,
            "bootstrap_rot_deg_std": result.bootstrap_rot_deg_std, "seconds": seconds,
            "refined_intrinsics": result.refined_camera.to_dict() if result.refined_camera else None,
            "output": None if args.dry_run else str(out_path), "backup": str(backup) if backup else None}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console(stderr=args.json)
    if args.print_target:
        import cv2

        target = load_target(args.target)
        cv2.imwrite(args.print_target, target.image(px_per_m=300 / 0.0254))  # 300 dpi
        console.print(f"wrote {args.print_target}: {target.size_m[0] * 1000:.0f} x {target.size_m[1] * 1000:.0f} mm "
                      "at 300 dpi; print at 100 % and check square_size_m")
        return 0
    try:
        record = run(args, console)
    except (HandEyeError, PoseGenerationError, TargetError, CalibrationError) as exc:
        console.print(f"[red]calibration failed[/]: {exc}\n{args.calibration}: calibration file left unchanged")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
