"""Simulated time: sim_cell publishes /clock, and with use_sim_time the policy and the safety monitor run on it.

The sim is deliberately slowed to a quarter of real time (``real_time_factor``): on the wall clock the policy and
the gate would keep their nominal rates and get 4x too many steps per simulated second; on /clock they keep their
rates per simulated second."""

from __future__ import annotations

import time

import numpy as np
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from trajectory_msgs.msg import JointTrajectory

from dexstack.launch.runner import LaunchedGraph
from dexstack.launch.xml import parse_launch_file
from dexstack.nodes import common
from tests.ros_harness import dump_logs, wait_for

RTF = 0.25


def test_policy_and_gate_run_on_the_simulation_clock(rclpy_context, tmp_path):
    from rclpy.node import Node

    description = parse_launch_file("sim_policy", {"policy": "replay", "use_sim_time": "true"})
    description.nodes = [n for n in description.nodes if n.executable != "object_pose"]
    for node in description.nodes:
        if node.executable == "sim_cell":
            node.params.update({"camera_enabled": "false", "real_time_factor": str(RTF)})
    node = Node("test_sim_time", parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)])
    clock: list[tuple[float, float]] = []  # (wall, sim)
    policy_sim: list[float] = []
    gate_sim: list[float] = []
    node.create_subscription(Clock, "/clock", lambda m: clock.append(
        (time.monotonic(), common.stamp_to_ns(m.clock) * 1e-9)), QoSProfile(depth=1,
                                                                           reliability=ReliabilityPolicy.BEST_EFFORT))
    sim_now = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731
    node.create_subscription(JointTrajectory, "/dexstack/arm/command", lambda _m: policy_sim.append(sim_now()),
                             common.COMMAND_QOS)
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", lambda _m: gate_sim.append(sim_now()),
                             common.COMMAND_QOS)
    spin = common.BackgroundSpin(node)
    graph = LaunchedGraph(description, log_dir=tmp_path / "logs").start()
    try:
        assert wait_for(lambda: len(policy_sim) > 5 and len(gate_sim) > 5, 60.0), dump_logs(graph)
        t0 = sim_now()
        wall0 = time.monotonic()
        assert wait_for(lambda: time.monotonic() - wall0 > 6.0, 10.0)
        t1 = sim_now()
        assert not graph.failed(), dump_logs(graph)
    finally:
        codes = graph.stop()
        spin.close(shutdown_rclpy=False)
    assert all(c == 0 for c in codes.values()), f"nodes did not exit cleanly: {codes}\n{dump_logs(graph)}"
    walls, sims = np.array(clock).T
    rate = np.polyfit(walls[-len(walls) // 2:], sims[-len(sims) // 2:], 1)[0]
    assert 0.8 * RTF < rate < 1.1 * RTF, f"/clock advanced {rate:.2f} s per wall second"
    span = t1 - t0
    policy_hz = sum(t0 <= t <= t1 for t in policy_sim) / span
    gate_hz = sum(t0 <= t <= t1 for t in gate_sim) / span
    assert 16.0 < policy_hz < 24.0, f"policy at {policy_hz:.1f} Hz of simulated time (nominal 20)"
    assert 80.0 < gate_hz < 120.0, f"safety monitor at {gate_hz:.1f} Hz of simulated time (nominal 100)"
