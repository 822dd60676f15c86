"""dexstack-sim-demo: the main job. Brings up the simulated cell over real ROS 2, runs a scripted motion, reports.

Starts the nodes of ``launch/sim_demo.launch.xml`` as separate processes (localhost-only DDS), watches the graph
from a monitor node in this process, and writes ``runs/<time>/report.json``, ``report.md``, a camera snapshot
and every node's log.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dexstack.rosenv import force_localhost_dds


def write_png(path: Path, rgb8: np.ndarray) -> None:
    """Minimal PNG writer (RGB8) so the report needs no imaging library."""
    h, w, _ = rgb8.shape
    raw = b"".join(b"\x00" + rgb8[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))


def run(args: argparse.Namespace) -> int:
    force_localhost_dds()  # before rclpy loads: the sim entry point never lets DDS leave loopback
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from dexstack.control.scripted import load_motion
    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes.monitor import GraphMonitor
    from dexstack.robot.description import load_description
    from dexstack.sim.config import load_cell_config

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(args.output).resolve() / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    cell = load_cell_config(args.cell)
    description = load_description(cell.robot_profile)
    motion = load_motion(args.motion, description)
    launch = parse_launch_file("sim_demo", {"cell": args.cell, "motion": args.motion})

    rclpy.init()
    monitor = GraphMonitor()
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    graph = LaunchedGraph(launch, log_dir=run_dir / "logs").start()
    print(f"[demo] started {[n.name for n in graph.nodes]} (logs in {run_dir / 'logs'})")
    ok = True
    try:
        deadline = time.monotonic() + args.startup_timeout_s
        while monitor.joint_states.count == 0 and time.monotonic() < deadline and not graph.failed():
            executor.spin_once(timeout_sec=0.1)
        if monitor.joint_states.count == 0:
            print(f"[demo] no /joint_states within {args.startup_timeout_s} s; exited: {graph.failed()}",
                  file=sys.stderr)
            ok = False
        else:
            monitor.reset_counts()
            watch_s = motion.duration_s + args.settle_s
            print(f"[demo] graph up; watching the scripted motion for {watch_s:.1f} s")
            end = time.monotonic() + watch_s
            while time.monotonic() < end and not graph.failed():
                executor.spin_once(timeout_sec=0.05)
    finally:
        codes = graph.stop()
    report = monitor.report()
    final = report.get("final_joint_positions_rad")
    expected = np.concatenate([motion.arm_rad[-1], motion.hand_rad[-1]])
    if final is not None:
        report["final_tracking_error_rad_max"] = float(np.max(np.abs(np.array(final) - expected)))
    report.update({
        "run_dir": str(run_dir),
        "cell": cell.name,
        "robot_profile": description.profile.name,
        "motion": args.motion,
        "motion_duration_s": motion.duration_s,
        "nodes": {n.name: {"exit_code": codes.get(n.name), "log": str(n.log_path)} for n in graph.nodes},
        "dds": {k: os.environ.get(k, "") for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                                                    "RMW_IMPLEMENTATION")},
    })
    if monitor.last_color is not None:
        write_png(run_dir / "camera_color.png", monitor.last_color)
        report["outputs"] = {"camera_snapshot": str(run_dir / "camera_color.png")}
    ok = ok and report["rates_hz"]["joint_states"] > 0.8 * args.expected_joint_states_hz
    ok = ok and report["rates_hz"]["camera_color"] > 0.0
    ok = ok and report.get("final_tracking_error_rad_max", np.inf) < args.tolerance_rad
    report["ok"] = bool(ok)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "report.md").write_text(_markdown(report))
    print(_markdown(report))
    monitor.destroy_node()
    rclpy.shutdown()
    return 0 if ok else 1


def _markdown(report: dict) -> str:
    lines = [f"# dexstack sim demo: {'OK' if report['ok'] else 'FAILED'}", "",
             f"- cell `{report['cell']}`, robot `{report['robot_profile']}`, motion `{report['motion']}` "
             f"({report['motion_duration_s']:.1f} s)",
             f"- nodes: " + ", ".join(f"{k} (exit {v['exit_code']})" for k, v in report["nodes"].items()),
             "- rates (Hz): " + ", ".join(f"{k} {v:.1f}" for k, v in report["rates_hz"].items())]
    if "physics_hz" in report:
        lines.append(f"- physics {report['physics_hz']:.0f} Hz (sim_cell diagnostics), render {report['render_ms']:.1f} ms")
    if "final_tracking_error_rad_max" in report:
        lines.append(f"- final joint error vs last keyframe: {report['final_tracking_error_rad_max']:.4f} rad (max)")
    lines.append(f"- outputs: {report['run_dir']} (report.json, report.md, camera_color.png, logs/)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-sim-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", default="tabletop", help="cell configuration (config/cells/<name>.yaml)")
    parser.add_argument("--motion", default="demo", help="scripted motion (config/motions/<name>.yaml)")
    parser.add_argument("--output", default="runs", help="folder for the run report (default: ./runs)")
    parser.add_argument("--settle-s", type=float, default=2.0, help="watch this long after the motion ends")
    parser.add_argument("--startup-timeout-s", type=float, default=60.0)
    parser.add_argument("--expected-joint-states-hz", type=float, default=250.0)
    parser.add_argument("--tolerance-rad", type=float, default=0.05, help="final joint error allowed")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
