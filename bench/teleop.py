"""Benchmark of teleoperation latency on the simulated cell, over real DDS between processes.

sim_cell + safety_monitor + sim_hand (30 Hz keypoints stamped at "capture") + teleop run as processes; this
process receives the teleop commands (``/dexstack/arm/command``, stamped with the keypoints' capture stamp) and
the safety-gated driver commands. ``latency_ms_*``: capture stamp -> teleop command received here (the
camera-to-command path minus hand detection, which bench/perception.py times as ``hand_ms``).
Prints one JSON line.
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

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    import rclpy
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes import common
    from tests.ros_harness import SpinningNode, wait_for

    rclpy.init()
    spinning = SpinningNode("bench_teleop")
    node = spinning.node
    latencies_ms: list[float] = []
    driver: list[float] = []

    def on_command(msg: JointTrajectory) -> None:
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies_ms.append((node.get_clock().now().nanoseconds - stamp_ns) / 1e6)

    node.create_subscription(JointTrajectory, "/dexstack/arm/command", on_command, common.COMMAND_QOS)
    from dexstack.robot.profile import load_profile

    hand_driver_topic = load_profile("panda_allegro").hand.command.topic  # the launch file's default profile
    node.create_subscription(Float64MultiArray, hand_driver_topic, lambda _m: driver.append(time.monotonic()),
                             common.COMMAND_QOS)
    with tempfile.TemporaryDirectory() as logs, \
            LaunchedGraph(parse_launch_file("sim_teleop", {"auto_engage": "true"}), log_dir=Path(logs)):
        assert wait_for(lambda: len(latencies_ms) > 10, 60.0), "teleop did not start commanding"
        latencies_ms.clear()
        driver.clear()
        time.sleep(args.seconds)
        lat = np.array(latencies_ms)
        driver_hz = (len(driver) - 1) / (driver[-1] - driver[0]) if len(driver) > 1 else 0.0
    spinning.close()
    rclpy.shutdown()
    print(json.dumps({
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "command_hz": round(len(lat) / args.seconds, 1),
        "driver_command_hz": round(driver_hz, 1),
        "keypoint_hz": 30.0,
        "seconds": args.seconds,
    }))


if __name__ == "__main__":
    main()
