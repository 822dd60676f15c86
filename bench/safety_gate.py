"""Benchmark of the safety monitor.

- ``gate_ms_p50`` / ``gate_ms_p99``: time of one gate step at 1 kHz (input validation + jerk-limited filter +
  limit clamp + workspace FK) with arm and hand commands streaming, in-process.
- ``estop_latency_ms``: real nodes (sim_cell + safety_monitor in their own processes): from sending the e-stop
  request to the arrival of the last command the driver topic receives, median of ``--estops`` stops.
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


def gate_timing(ticks: int) -> tuple[float, float]:
    from dexstack.robot import load_description
    from dexstack.safety import SafetyConfig, SafetyGate

    d = load_description("panda_allegro")
    gate = SafetyGate(d, SafetyConfig(rate_hz=1000.0))
    q = d.home()
    n_arm = len(d.arm_joints)
    times = np.empty(ticks)
    for k in range(ticks):
        t = k * 1e-3
        target = d.home(d.arm_joints) + 0.3 * np.sin(2 * np.pi * 0.5 * t)
        t0 = time.perf_counter()
        gate.update_state(q, t)
        gate.arm_command(d.arm_joints, [target], [0.001], t)
        gate.hand_command(d.home(d.hand_joints) + 0.2, t)
        out = gate.tick(t)
        times[k] = 1000 * (time.perf_counter() - t0)
        q[:n_arm], q[n_arm:] = out.arm_rad, out.hand_rad
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def estop_latency(estops: int) -> float:
    import rclpy
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes import common
    from dexstack.robot import load_description
    from tests.ros_harness import SpinningNode, call_service, wait_for

    d = load_description("panda_allegro")
    rclpy.init()
    spinning = SpinningNode("bench_safety")
    node = spinning.node
    received: list[float] = []
    node.create_subscription(JointTrajectory, d.profile.arm.command.topic,
                             lambda _m: received.append(time.monotonic()), common.COMMAND_QOS)
    pub = node.create_publisher(JointTrajectory, "/dexstack/arm/command", common.COMMAND_QOS)
    latencies = []
    with tempfile.TemporaryDirectory() as logs, LaunchedGraph(parse_launch_file("sim_cell"), log_dir=Path(logs)):
        assert wait_for(lambda: pub.get_subscription_count() > 0, 60.0), "safety_monitor did not come up"
        estop = node.create_client(Trigger, "/safety_monitor/estop")
        assert estop.wait_for_service(timeout_sec=30.0)
        for k in range(estops):
            call_service(node, Trigger, "/safety_monitor/reset", Trigger.Request())
            target = d.home(d.arm_joints)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:  # stream commands at 100 Hz
                target[0] = d.home(d.arm_joints)[0] + 0.2 * np.sin(time.monotonic())
                point = JointTrajectoryPoint(positions=target.tolist())
                point.time_from_start.nanosec = 10_000_000
                pub.publish(JointTrajectory(joint_names=list(d.arm_joints), points=[point]))
                time.sleep(0.01)
            sent = time.monotonic()
            future = estop.call_async(Trigger.Request())
            while time.monotonic() < sent + 0.5:  # keep streaming: nothing may pass
                pub.publish(JointTrajectory(joint_names=list(d.arm_joints), points=[point]))
                time.sleep(0.01)
            assert future.done() and future.result().success
            after = [t for t in received if t >= sent]
            latencies.append(1000 * (max(after) - sent) if after else 0.0)
        call_service(node, Trigger, "/safety_monitor/reset", Trigger.Request())
    spinning.close()
    rclpy.shutdown()
    return float(np.median(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=5000)
    parser.add_argument("--estops", type=int, default=5)
    args = parser.parse_args()
    p50, p99 = gate_timing(args.ticks)
    print(json.dumps({"gate_ms_p50": round(p50, 4), "gate_ms_p99": round(p99, 4),
                      "estop_latency_ms": round(estop_latency(args.estops), 3), "ticks": args.ticks,
                      "estops": args.estops}))


if __name__ == "__main__":
    main()
