"""Benchmark of the safety monitor.

- ``gate_ms_p50`` / ``gate_ms_p99``: time of one gate step at 1 kHz (input validation + jerk-limited filter +
  limit clamp + workspace FK + self/table collision check of the setpoint) with arm and hand commands streaming,
  in-process.
- ``gate_ms_p99_collision``: the same while the stream drives the fingers into the table, so that every tick clips
  its step before contact (the collision check's worst case: a bisection of the step).
- ``refused_absurd``: of ``absurd_targets`` absurd commands (far outside the joint limits, or a jump far from the
  measured state, arm and hand), how many the gate refused whole (every one should be).
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


def gate_timing(ticks: int, into_table: bool = False, samples: list | None = None,
                profile: str = "panda_allegro") -> tuple[float, float, int]:
    """(p50, p99) of one gate tick in ms, and how many ticks clipped a step at a collision."""
    from dexstack.robot import load_description
    from dexstack.safety import SafetyConfig, SafetyGate

    d = load_description(profile)
    gate = SafetyGate(d, SafetyConfig(rate_hz=1000.0))
    q = d.home()
    n_arm = len(d.arm_joints)
    times = np.empty(ticks)
    for k in range(ticks):
        t = k * 1e-3
        target = d.home(d.arm_joints) + 0.3 * np.sin(2 * np.pi * 0.5 * t)
        if into_table:  # shoulder forward: the fingers press on the table and the gate holds them at its surface
            target = d.home(d.arm_joints)
            target[1] += 1.6
            target[0] += 0.3 * np.sin(2 * np.pi * 0.5 * t)
        t0 = time.perf_counter()
        gate.update_state(q, t)
        gate.arm_command(d.arm_joints, [target], [0.001], t)
        gate.hand_command(d.home(d.hand_joints) + 0.2, t)
        out = gate.tick(t)
        times[k] = 1000 * (time.perf_counter() - t0)
        q[:n_arm], q[n_arm:] = out.arm_rad, out.hand_rad
    clipped = gate.interventions.counts().get("collision: step clipped before contact", 0)
    if samples is not None:
        samples.extend(times.tolist())
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), clipped


def absurd_refusals(n: int, seed: int = 0) -> int:
    """Send ``n`` absurd commands (half far outside a joint limit, half a jump far from the state); count refusals."""
    from dexstack.control.commands import CommandError
    from dexstack.robot import load_description
    from dexstack.safety import SafetyConfig, SafetyGate

    d = load_description("panda_allegro")
    config = SafetyConfig()
    gate = SafetyGate(d, config)
    rng = np.random.default_rng(seed)
    lim = d.limit_arrays()
    n_arm = len(d.arm_joints)
    refused = 0
    for k in range(n):
        gate.update_state(d.home(), k * 1e-3)
        q = d.home()
        j = int(rng.integers(len(q)))
        if k % 2 == 0:  # outside a limit by more than allowed, up to 50 rad
            beyond = rng.uniform(config.max_outside_limits_rad + 0.01, 50.0)
            q[j] = lim["upper"][j] + beyond if rng.random() < 0.5 else lim["lower"][j] - beyond
        else:  # a jump larger than the allowed step (it may also leave the limits: refused either way)
            step = config.arm_max_step_rad if j < n_arm else config.hand_max_step_rad
            q[j] += rng.choice([-1.0, 1.0]) * rng.uniform(step + 0.01, step + 3.0)
        try:
            if j < n_arm:
                gate.arm_command(d.arm_joints, [q[:n_arm]], [0.5], k * 1e-3)
            else:
                gate.hand_command(q[n_arm:], k * 1e-3)
        except CommandError:
            refused += 1
    return refused


def estop_latency(estops: int) -> float:
    import rclpy
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dexstack.launch.runner import LaunchedGraph
    from dexstack.launch.xml import parse_launch_file
    from dexstack.nodes import common
    from dexstack.nodes.safety_link import SafetyLink
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
    safety = SafetyLink(node)
    latencies = []
    with tempfile.TemporaryDirectory() as logs, LaunchedGraph(parse_launch_file("sim_cell"), log_dir=Path(logs)):
        # Ready = the monitor has joint states and passes commands (a matched subscriber alone is not: under load
        # the first stream was refused while the monitor still waited for /joint_states).
        assert wait_for(lambda: safety.ready, 60.0), "safety_monitor did not become ready"
        estop = node.create_client(Trigger, "/safety_monitor/estop")
        assert estop.wait_for_service(timeout_sec=30.0)
        for _ in range(estops):
            call_service(node, Trigger, "/safety_monitor/reset", Trigger.Request())
            assert wait_for(lambda: safety.ready, 10.0), "safety_monitor not ready after the reset"
            target = d.home(d.arm_joints)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:  # stream commands at 100 Hz
                target[0] = d.home(d.arm_joints)[0] + 0.2 * np.sin(time.monotonic())
                point = JointTrajectoryPoint(positions=target.tolist())
                point.time_from_start.nanosec = 10_000_000
                pub.publish(JointTrajectory(joint_names=list(d.arm_joints), points=[point]))
                time.sleep(0.01)
            sent = time.monotonic()
            # A latency of "nothing after the stop" only means something if the stream was passing before it.
            assert any(t > sent - 0.2 for t in received), "the command stream did not pass before the e-stop"
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
    parser.add_argument("--absurd", type=int, default=200, help="absurd commands to send")
    parser.add_argument("--profile", default="panda_allegro", help="robot profile of the gate timings")
    from dexstack.viz.plots import add_plot_argument, bench_plot

    add_plot_argument(parser)
    args = parser.parse_args()
    free: list[float] = []
    colliding: list[float] = []
    p50, p99, _ = gate_timing(args.ticks, samples=free, profile=args.profile)
    _, p99_collision, clipped = gate_timing(args.ticks, into_table=True, samples=colliding, profile=args.profile)
    line = {"gate_ms_p50": round(p50, 4), "gate_ms_p99": round(p99, 4),
            "gate_ms_p99_collision": round(p99_collision, 4), "collision_clipped_ticks": clipped,
            "refused_absurd": absurd_refusals(args.absurd), "absurd_targets": args.absurd,
            "estop_latency_ms": round(estop_latency(args.estops), 3), "ticks": args.ticks, "estops": args.estops,
            "profile": args.profile}
    print(json.dumps(line))
    if args.plot:
        bench_plot(args.plot, "bench/safety_gate.py", line, {"gate step": free, "gate step into the table": colliding},
                   unit="ms per step")


if __name__ == "__main__":
    main()
