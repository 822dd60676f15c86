"""Benchmark of the policy runtime.

- ``step_hz`` / ``step_ms_p50`` / ``step_ms_p99``: one control step as the ``policy`` node does it, in-process on one
  torch thread: observation build (joint state + object pose + reference windows) + inference + building and
  publishing the arm JointTrajectory and hand Float64MultiArray over real rclpy publishers. ``step_hz`` is
  1 / median step time (the rate the step alone could sustain).
- ``tracking_success`` / ``replay_success``: fraction of the held-out references (policies/references/heldout_*)
  tracked (object within 4 cm all along, final error <= 3 cm and <= 0.4 rad) by the trained tracking bundle and by
  open-loop replay, in the MuJoCo sim cell from home, object pose from the simulator (perfect perception).
  ``null`` with a ``note`` when the tracking bundle is not trained.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # before rclpy loads
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def step_timing(bundle: str, steps: int) -> dict:
    import rclpy
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dexstack.nodes import common
    from dexstack.nodes.policy import _duration
    from dexstack.policies import InputCache, PolicyRuntime
    from dexstack.robot import load_description

    d = load_description("panda_allegro")
    runtime = PolicyRuntime(d)
    runtime.stage(runtime.load(bundle))
    cache = InputCache(d.joints)
    rclpy.init()
    node = rclpy.create_node("bench_policy")
    arm_pub = node.create_publisher(JointTrajectory, "/bench/arm/command", common.COMMAND_QOS)
    hand_pub = node.create_publisher(Float64MultiArray, "/bench/hand/command", common.COMMAND_QOS)
    rng = np.random.default_rng(0)
    times = np.empty(steps)
    try:
        for k in range(steps):
            now = time.monotonic()
            cache.update_joints(d.joints, d.home() + rng.normal(0, 0.01, len(d.joints)), np.zeros(len(d.joints)), now)
            cache.update_object(np.array([0.5, 0.0, 0.025, 0.0, 0.0, 0.0, 1.0]), now)
            t0 = time.perf_counter()
            targets = runtime.step(cache.state(now, 0.2), now)
            traj = JointTrajectory(joint_names=list(d.arm_joints))
            traj.points.append(JointTrajectoryPoint(positions=targets.arm.tolist(),
                                                    time_from_start=_duration(runtime.period_s)))
            arm_pub.publish(traj)
            hand_pub.publish(Float64MultiArray(data=targets.hand.tolist()))
            times[k] = time.perf_counter() - t0
    finally:
        node.destroy_node()
        rclpy.shutdown()
        runtime.close()
    return {"step_hz": round(1.0 / float(np.median(times)), 1), "step_ms_p50": round(1e3 * float(np.median(times)), 3),
            "step_ms_p99": round(1e3 * float(np.percentile(times, 99)), 3)}


def success_rates(bundle: str) -> tuple[float, float, int]:
    from dexstack.policies import list_references, load_policy, load_reference, reference_path
    from dexstack.policies.tracking.env import evaluate
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.robot import load_description

    d = load_description("panda_allegro")
    backend = CellBackend()
    refs = [load_reference(reference_path(n), d) for n in sorted(list_references()) if n.startswith("heldout_")]
    rates = []
    for policy in (load_policy(bundle, d), load_policy("replay", d)):
        rates.append(float(np.mean([r.success for r in evaluate(policy, refs, backend, d)])))
    return rates[0], rates[1], len(refs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="track_cube", help="tracking bundle (name or folder)")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the node runs it
    from dexstack.policies import PolicyError, bundle_dir

    out: dict = {}
    try:
        bundle_dir(args.bundle)
        trained = True
    except PolicyError as exc:
        trained, out["note"] = False, f"tracking policy not trained: {exc}"
    out.update(step_timing(args.bundle if trained else "replay", args.steps))
    out["step_policy"] = args.bundle if trained else "replay"
    if trained:
        tracking, replay, n = success_rates(args.bundle)
        out.update({"tracking_success": tracking, "replay_success": replay, "heldout_references": n})
    else:
        out.update({"tracking_success": None, "replay_success": None})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
