"""Benchmark of the simulated cell: physics, joint-state and camera rates over real DDS, and render time.

Runs sim_cell in its own process (launch/sim_cell.launch.xml), listens from this process for ``--seconds``,
and prints one JSON line: physics_hz, joint_states_hz, camera_hz, render_ms.
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
os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes.monitor import GraphMonitor
    from dexstack.sim import SimCell
    from dexstack.sim.camera import SimCamera

    # Render time of one RGB-D frame, in this process, on an idle cell.
    cell = SimCell()
    camera = SimCamera(cell)
    camera.render()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        camera.render()
        times.append(1000 * (time.perf_counter() - t0))
    camera.close()

    rclpy.init()
    monitor = GraphMonitor("bench_sim_rates")
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    with tempfile.TemporaryDirectory() as logs, LaunchedGraph(parse_launch_file("sim_cell"), log_dir=Path(logs)):
        deadline = time.monotonic() + 60
        while monitor.joint_states.count == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        monitor.reset_counts()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        report = monitor.report()
    rclpy.shutdown()
    print(json.dumps({
        "physics_hz": round(report.get("physics_hz", 0.0), 1),
        "joint_states_hz": round(report["rates_hz"]["joint_states"], 1),
        "camera_hz": round(report["rates_hz"]["camera_color"], 2),
        "render_ms": round(float(np.median(times)), 2),
        "render_ms_in_node": round(report.get("render_ms", 0.0), 2),
        "seconds": args.seconds,
    }))


if __name__ == "__main__":
    main()
