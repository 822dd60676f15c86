"""dexstack-viz: see what the robot sees, live from the ROS graph or from a recorded episode, with Rerun.

    dexstack-viz --web --localhost                     live sim graph in the browser: open the printed 127.0.0.1 URL
    dexstack-viz --save runs/live.rrd                  live, headless: write an .rrd (open it with `rerun FILE`)
    dexstack-viz recordings/episode_000003             an episode -> runs/viz_episode_000003.rrd
    dexstack-viz recordings/episode_000003 --web       an episode in the browser (Ctrl-C to stop serving)

Draws RGB and aligned depth, the point cloud, hand keypoints and skeleton, the wrist frame, the object pose with its
model, the robot posed from /joint_states with its meshes, the camera frustum from the calibration, joint targets
before and after the safety gate vs measured, and safety interventions as events. The web viewer (Rerun's, served
from the wheel, no internet needed) listens on 127.0.0.1 only. Live, it is a separate, best-effort, throttled
subscriber: it drops frames rather than slowing anything (see dexstack/nodes/viz.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dexstack-viz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("episode", nargs="?", help="a recorded episode directory (omit for the live graph)")
    parser.add_argument("--web", action="store_true", help="serve the web viewer on 127.0.0.1")
    parser.add_argument("--web-port", type=int, default=9090, help="web page port (0: any free port)")
    parser.add_argument("--grpc-port", type=int, default=9876, help="viewer data port (0: any free port)")
    parser.add_argument("--save", default="", help="write the recording to this .rrd file")
    parser.add_argument("--profile", default="", help="robot profile (default: the episode's, else panda_allegro)")
    parser.add_argument("--calibration", default="", help="camera calibration name or file (default: the episode's, "
                        "else sim_tabletop); 'none' for no camera pose")
    parser.add_argument("--object", default="cube", help="object model at /dexstack/object_pose ('none': axes only)")
    parser.add_argument("--localhost", action="store_true", help="live: keep DDS discovery on this machine and use "
                        "the shared-memory profile (the simulated cell's setting)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    return parser


def _none(value: str) -> str:
    return "" if value.lower() == "none" else value


def run_episode(args: argparse.Namespace) -> int:
    from dexstack.calibration import CalibrationError, load_camera_calibration
    from dexstack.perception.objects import load_object_model
    from dexstack.robot.description import load_description
    from dexstack.viz.episode import episode_mcap, episode_profile, log_episode
    from dexstack.viz.scene import SceneLogger
    from dexstack.viz.server import VizServerError, WebViewer, open_recording

    episode = Path(args.episode)
    try:
        episode_mcap(episode)
    except FileNotFoundError as exc:
        print(f"dexstack-viz: {exc}", file=sys.stderr)
        return 2
    profile, calibration_text = episode_profile(episode)
    description = load_description(args.profile or profile or "panda_allegro")
    calibration = None
    try:
        if args.calibration.lower() == "none":
            pass
        elif args.calibration:
            calibration = load_camera_calibration(args.calibration)
        elif calibration_text:  # the calibration file's content as it was when the episode was recorded
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(calibration_text)
            try:
                calibration = load_camera_calibration(f.name)
            finally:
                Path(f.name).unlink(missing_ok=True)
        else:
            calibration = load_camera_calibration("sim_tabletop")
    except CalibrationError as exc:
        print(f"dexstack-viz: {exc}; drawing without the camera pose", file=sys.stderr)
    object_model = load_object_model(_none(args.object)) if _none(args.object) else None
    try:
        web = WebViewer(web_port=args.web_port, grpc_port=args.grpc_port).start() if args.web else None
    except VizServerError as exc:
        print(f"dexstack-viz: {exc}", file=sys.stderr)
        return 2
    save = args.save or (None if web else f"runs/viz_{episode.resolve().name}.rrd")
    try:
        rec = open_recording(episode.resolve().name, save, web, live=False)
        scene = SceneLogger(rec, description, calibration, object_model)
        scene.log_static()
        drawn = log_episode(episode, scene)
        rec.flush()
        print(f"dexstack-viz: drew {sum(drawn.values())} messages of {episode}"
              + (f" -> {save}" if save else ""))
        if web is not None:
            print(f"dexstack-viz: web viewer at {web.url} (Ctrl-C to stop)", flush=True)
            deadline = time.monotonic() + args.duration if args.duration > 0 else float("inf")
            while time.monotonic() < deadline:
                time.sleep(0.2)
        rec.disconnect()
    except KeyboardInterrupt:
        pass
    finally:
        if web is not None:
            web.close()
    return 0


def run_live(args: argparse.Namespace) -> int:
    if args.localhost:
        from dexstack.rosenv import force_localhost_dds

        force_localhost_dds()  # before rclpy loads
    ros_args = ["--ros-args", "-p", f"web:={str(args.web).lower()}", "-p", f"web_port:={args.web_port}",
                "-p", f"grpc_port:={args.grpc_port}", "-p", f"object:='{_none(args.object)}'"]
    if args.save:
        ros_args += ["-p", f"save_path:='{args.save}'"]
    if args.profile:
        ros_args += ["-p", f"robot_profile:={args.profile}"]
    if args.calibration:
        ros_args += ["-p", f"calibration:='{_none(args.calibration)}'"]
    from dexstack.nodes import viz

    if args.duration > 0:
        import signal

        signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGINT))
        signal.setitimer(signal.ITIMER_REAL, args.duration)
    viz.main(ros_args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_episode(args) if args.episode else run_live(args)


if __name__ == "__main__":
    sys.exit(main())
