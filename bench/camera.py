"""Benchmark of the camera node: aligned RGB-D published by the node and received in another process.

For 640x480 and 848x480 (color and depth the same size, 1.5 cm baseline, no filters) records a short 30 fps
SoftwareCamera ``.db3`` in real time into a temporary folder, starts the camera node on it
(launch/sim_camera_playback.launch.xml: real-time pacing, repeat) and listens from this process for ``--seconds``.
Prints one JSON line:

* ``aligned_<size>_hz``: aligned depth images received per second (the node's sustained published rate);
* ``latency_ms_p50``/``p99`` (640x480; ``_848`` for 848x480): receipt time here minus the message's stamp (the frame's
  own stamp in ROS time, anchored when the node reads the first frame of each loop: node processing + transport);
* ``cpu_percent`` (640x480; ``cpu_percent_848``): the node process, utime + stime from /proc/<pid>/stat, 100 = one
  core;
* ``dropped``: over both runs, frames the core skipped (frame-number gaps), frames read but not published, and frames
  published but not received here; ``dropped_detail`` splits them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # before rclpy loads

import numpy as np  # noqa: E402

from dexstack.camera import CameraConfig, SoftwareCamera  # noqa: E402
from dexstack.camera_model import CameraModel  # noqa: E402

FPS = 30
RECORD_FRAMES = 60


def record(path: Path, width: int, height: int) -> None:
    """RECORD_FRAMES distinct frames pushed at FPS in real time (playback is paced by the recording's timing)."""
    intr = CameraModel(width, height, 0.96 * width, 0.96 * width, width / 2 - 0.7, height / 2 + 1.3)
    T = np.eye(4)
    T[0, 3] = 0.015
    profile = f"{width}x{height}x{FPS}"
    config = CameraConfig(source="software", color_profile=profile, depth_profile=profile, record_path=str(path))
    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(RECORD_FRAMES)]
    depths = [rng.integers(300, 3000, (height, width), dtype=np.uint16) for _ in range(RECORD_FRAMES)]
    period_s = 1.0 / FPS
    with SoftwareCamera(config, intr, intr, T) as cam:
        start = time.monotonic()
        for n in range(RECORD_FRAMES):
            time.sleep(max(0.0, start + n * period_s - time.monotonic()))
            cam.push(colors[n], depths[n], 1_000_000_000 + round(n * period_s * 1e9), n)
            cam.read(timeout_s=0.0 if n == 0 else 1.0)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def run(path: Path, seconds: float, log_dir: Path) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes import common

    node = Node("bench_camera")
    state = {"depth": [], "color": [], "latency_ms": [], "diag": []}  # receipt times (ns); diagnostics samples

    def on_image(kind):
        def callback(msg):
            now_ns = node.get_clock().now().nanoseconds
            state[kind].append(now_ns)
            state["latency_ms"].append((now_ns - common.stamp_to_ns(msg.header.stamp)) * 1e-6)
        return callback

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name == "camera":
                values = {kv.key: kv.value for kv in status.values}
                state["diag"].append((common.stamp_to_ns(msg.header.stamp), int(values.get("frames_published", 0)),
                                      int(values.get("dropped_frames", 0)), int(values.get("publish_dropped", 0))))

    node.create_subscription(Image, "/camera/camera/color/image_raw", on_image("color"), common.SENSOR_QOS)
    node.create_subscription(Image, "/camera/camera/aligned_depth_to_color/image_raw", on_image("depth"),
                             common.SENSOR_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin_for(duration_s: float) -> None:
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    launch = parse_launch_file("sim_camera_playback", {"playback_path": str(path), "repeat_playback": "true"})
    with LaunchedGraph(launch, log_dir=log_dir) as graph:
        pid = graph.nodes[0].process.pid
        deadline = time.monotonic() + 60
        while len(state["depth"]) < 10 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        spin_for(1.5)  # warm up
        if len(state["depth"]) < 10:
            raise SystemExit(f"no frames from the camera node; see {log_dir}")
        for key in ("depth", "color", "latency_ms", "diag"):
            state[key] = []
        ticks0, t0 = cpu_ticks(pid), time.monotonic()
        spin_for(seconds)
        ticks1, t1 = cpu_ticks(pid), time.monotonic()
        received = len(state["depth"])
        spin_for(0.3)  # images in flight at the last diagnostics sample
    node.destroy_node()
    # Published vs received between the first and last diagnostics samples of the window (their stamps are the
    # node's ROS time, the receipt times this host's: the same clock).
    (ta, fa, da, pa), (tb, fb, db, pb) = state["diag"][0], state["diag"][-1]
    received_between = min(sum(ta <= t <= tb for t in state[kind]) for kind in ("depth", "color"))
    return {
        "hz": received / (t1 - t0),
        "latency_ms": state["latency_ms"],
        "cpu_percent": 100.0 * (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (t1 - t0),
        "core_dropped": db - da,
        "publish_dropped": pb - pa,
        "not_received": max(0, (fb - fa) - received_between),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration of each resolution's run")
    args = parser.parse_args()
    import rclpy

    rclpy.init()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as tmp:
        for width, height in ((640, 480), (848, 480)):
            path = Path(tmp) / f"software_{width}x{height}.db3"
            record(path, width, height)
            results[width] = run(path, args.seconds, Path(tmp) / f"logs_{width}")
            path.unlink()
    rclpy.shutdown()
    r640, r848 = results[640], results[848]
    detail = {k: r640[k] + r848[k] for k in ("core_dropped", "publish_dropped", "not_received")}
    print(json.dumps({
        "aligned_640x480_hz": round(r640["hz"], 1),
        "aligned_848x480_hz": round(r848["hz"], 1),
        "latency_ms_p50": round(float(np.percentile(r640["latency_ms"], 50)), 2),
        "latency_ms_p99": round(float(np.percentile(r640["latency_ms"], 99)), 2),
        "latency_ms_min": round(float(np.min(r640["latency_ms"])), 2),
        "latency_848_ms_p50": round(float(np.percentile(r848["latency_ms"], 50)), 2),
        "latency_848_ms_p99": round(float(np.percentile(r848["latency_ms"], 99)), 2),
        "cpu_percent": round(r640["cpu_percent"], 1),
        "cpu_percent_848": round(r848["cpu_percent"], 1),
        "dropped": sum(detail.values()),
        "dropped_detail": detail,
        "source_fps": FPS,
        "seconds": args.seconds,
    }))


if __name__ == "__main__":
    main()
