"""Collect V-GPS training episodes: the stochastic base policy in the sim cell's physics, written by the recorder.

    dexstack-vgps-collect --policy track_cube --episodes 300 --references 24 --out recordings/vgps_train

Runs the base policy's Gaussian (plain sampling: a ``vgps`` policy with ``selection: random, num_samples: 1``) through
:class:`~dexstack.policies.runtime.PolicyRuntime` as the ``policy`` node does, on training references
(``references.training_specs``; never the held-out ones), with the env's friction/mass randomisation, and (``--gate
deployed``, the default) through the deployed command path: the pure safety gate of ``config/safety.yaml`` ticked at
its rate with the measured state (:class:`~dexstack.evaluation.ticked.TickedCell`), so the data show what a sampled
action does after the gate's jerk filter and limits, as on the robot (``--gate off``: the policy's targets straight
to the cell's drivers, the pre-issue-17 data). The cell is the current ``tabletop`` cell config (its physics,
``impratio`` included). The recorded commands are the policy's, before the gate, as the recorder sees them on the
ROS graph. Each episode
is written by the recorder's own core (:class:`~dexstack.record.session.RecordingSession`, the class behind the
``recorder`` node) in the same rosbag2 MCAP format and topics as a live recording (``/joint_states``,
``/dexstack/object_pose``, ``/dexstack/arm/command``, ``/dexstack/hand/command``, sim-time stamps) and labelled with
:meth:`RecordingSession.set_success` (what ``~/set_success`` calls). The references used are saved under
``<out>/references/`` so :mod:`dexstack.vgps.dataset` can rebuild the observations. An episode stops once the
object is farther than the success bound from its reference (a failure from then on).

This in-process path exists because the ROS path (sim_cell + safety_monitor + policy + recorder) runs in real time:
at least a reference's duration (6-8 s) per episode, i.e. 400 episodes in > 45 min, against ~250 s here (measured,
400 episodes on the shared 2-core machine). The reader (:mod:`dexstack.vgps.dataset`) is the same for both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from dexstack.policies.manifest import parse_manifest
from dexstack.policies.observation import RobotState
from dexstack.policies.reference import ReferenceTrajectory, save_reference
from dexstack.policies.registry import Policy, build_policy
from dexstack.policies.runtime import PolicyRuntime
from dexstack.record.msgdefs import TypeRegistry
from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec
from dexstack.vgps.dataset import ARM_TOPIC, HAND_TOPIC, OBJECT_TOPIC, REFERENCES_SUBDIR, STATE_TOPIC

TOPICS = {STATE_TOPIC: "sensor_msgs/msg/JointState", OBJECT_TOPIC: "geometry_msgs/msg/PoseStamped",
          ARM_TOPIC: "trajectory_msgs/msg/JointTrajectory", HAND_TOPIC: "std_msgs/msg/Float64MultiArray"}


def sampling_policy(base: str, description, seed: int = 0, k: int = 1, selection: str = "random",
                    include_mean: bool = False, critic: str = "", temperature: float = 0.0,
                    name: str = "", std_scale: float = 1.0, margin: float = 0.0) -> Policy:
    """A ``vgps`` policy around bundle ``base``; the defaults give plain sampling of its Gaussian."""
    from dexstack.policies.bundles import load_bundle_manifest  # noqa: PLC0415

    base_manifest = load_bundle_manifest(base)
    raw = {"name": name or f"{base_manifest.name}_sampling", "type": "vgps",
           "robot_profile": base_manifest.robot_profile, "control_rate_hz": base_manifest.control_rate_hz,
           "params": {"base_policy": str(base_manifest.root), "num_samples": k, "selection": selection,
                      "include_mean": include_mean, "temperature": temperature, "seed": seed,
                      "std_scale": std_scale, "margin": margin,
                      **({"critic": critic} if critic else {})}}
    return build_policy(parse_manifest(raw), description)


class MessageFactory:
    """rosbags messages (no rclpy) for the recorded topics, CDR-encoded by the recorder's type registry."""

    def __init__(self, registry: TypeRegistry, description):
        self.registry = registry
        self.d = description
        c = registry.message_class
        self.Time, self.Header = c("builtin_interfaces/msg/Time"), c("std_msgs/msg/Header")
        self.Duration = c("builtin_interfaces/msg/Duration")
        self.JointState, self.PoseStamped = c("sensor_msgs/msg/JointState"), c("geometry_msgs/msg/PoseStamped")
        self.Pose, self.Point, self.Quaternion = (c("geometry_msgs/msg/Pose"), c("geometry_msgs/msg/Point"),
                                                  c("geometry_msgs/msg/Quaternion"))
        self.Traj, self.Point_ = c("trajectory_msgs/msg/JointTrajectory"), c("trajectory_msgs/msg/JointTrajectoryPoint")
        self.Multi, self.Layout = c("std_msgs/msg/Float64MultiArray"), c("std_msgs/msg/MultiArrayLayout")

    def _header(self, stamp_ns: int, frame: str = ""):
        return self.Header(stamp=self.Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                           frame_id=frame)

    def joint_state(self, stamp_ns: int, q: np.ndarray, dq: np.ndarray) -> bytes:
        msg = self.JointState(header=self._header(stamp_ns), name=list(self.d.joints), position=np.asarray(q, float),
                              velocity=np.asarray(dq, float), effort=np.zeros(len(q)))
        return self.registry.encode(msg, TOPICS[STATE_TOPIC])

    def object_pose(self, stamp_ns: int, pose: np.ndarray, frame: str) -> bytes:
        x, y, z, qx, qy, qz, qw = (float(v) for v in pose)
        msg = self.PoseStamped(header=self._header(stamp_ns, frame), pose=self.Pose(
            position=self.Point(x=x, y=y, z=z), orientation=self.Quaternion(x=qx, y=qy, z=qz, w=qw)))
        return self.registry.encode(msg, TOPICS[OBJECT_TOPIC])

    def arm_command(self, stamp_ns: int, q: np.ndarray, period_s: float) -> bytes:
        nsec = int(round(period_s * 1e9))
        point = self.Point_(positions=np.asarray(q, float), velocities=np.zeros(0), accelerations=np.zeros(0),
                            effort=np.zeros(0), time_from_start=self.Duration(sec=nsec // 1_000_000_000,
                                                                              nanosec=nsec % 1_000_000_000))
        msg = self.Traj(header=self._header(stamp_ns), joint_names=list(self.d.arm_joints), points=[point])
        return self.registry.encode(msg, TOPICS[ARM_TOPIC])

    def hand_command(self, q: np.ndarray) -> bytes:
        msg = self.Multi(layout=self.Layout(dim=[], data_offset=0), data=np.asarray(q, float))
        return self.registry.encode(msg, TOPICS[HAND_TOPIC])


def record_episode(session: RecordingSession, factory: MessageFactory, policy: Policy, ref: ReferenceTrajectory,
                   backend, description, friction: float = 1.0, mass: float = 1.0,
                   stop_on_failure: bool = True) -> tuple[bool, Path, int]:
    """One episode of ``policy`` on ``ref`` from the reference's start, recorded; (success, folder, steps)."""
    from dexstack.policies.tracking.env import TrackingTask  # noqa: PLC0415 (MuJoCo-free import path above)

    runtime = PolicyRuntime(description)
    policy.reference = ref
    runtime.stage(policy)
    task = TrackingTask(ref)
    backend.reset(ref.q_at(0.0), ref.object_pose_at(0.0), friction, mass)
    period = policy.manifest.period_s
    frame = description.profile.arm.base_link if hasattr(description.profile, "arm") else ""
    ok, message, _ = session.start(task=f"track {ref.kind} reference={ref.name}",
                                   robot_profile=description.profile.name, policy=policy.name,
                                   operator="dexstack-vgps-collect")
    if not ok:
        raise RuntimeError(message)
    epoch = time.time_ns()
    now, steps, failed = 0.0, 0, False
    while now < ref.duration_s - 1e-9:
        q, dq, obj = backend.observe()
        stamp = epoch + int(round(now * 1e9))
        session.submit(STATE_TOPIC, factory.joint_state(stamp, q, dq), stamp)
        session.submit(OBJECT_TOPIC, factory.object_pose(stamp, obj, frame), stamp)
        targets = runtime.step(RobotState(q=q, dq=dq, object_pose=obj), now)
        if targets is not None:
            if targets.arm is not None:
                session.submit(ARM_TOPIC, factory.arm_command(stamp, targets.arm, period), stamp)
            if targets.hand is not None:
                session.submit(HAND_TOPIC, factory.hand_command(targets.hand), stamp)
            backend.command(targets.arm, targets.hand, period)
        backend.advance(period)
        now += period
        steps += 1
        _, _, obj = backend.observe()
        task.step(q, obj, now, np.zeros(1))
        if stop_on_failure and task.max_pos_err > task.config.success.max_position_error_m:
            failed = True
            break
    success = (not failed) and task.success()
    session.set_success(success)
    ok, message, path = session.stop()
    if not ok:
        raise RuntimeError(message)
    return success, Path(path), steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="track_cube", help="stochastic base bundle")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--references", type=int, default=24, help="training references (training_specs)")
    parser.add_argument("--reference-seed", type=int, default=100, help="seed of the training references")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-randomization", action="store_true", help="nominal friction and mass")
    parser.add_argument("--gate", choices=("deployed", "off"), default="deployed",
                        help="deployed: through the safety gate ticked as safety_monitor does; off: ungated")
    args = parser.parse_args(argv)
    if args.episodes <= 0 or args.references <= 0:
        parser.error("--episodes and --references must be positive")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    from dexstack.policies.tracking.env import Randomization  # noqa: PLC0415
    from dexstack.policies.tracking.physics import CellBackend  # noqa: PLC0415
    from dexstack.policies.tracking.references import cached_reference, training_specs  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    backend = CellBackend()
    if args.gate == "deployed":
        from dexstack.evaluation.ticked import TickedCell  # noqa: PLC0415

        backend = TickedCell(backend)
    model = getattr(backend, "backend", backend).model
    description = backend.description
    description = load_description(description.profile.name)
    refs = [cached_reference(s, description) for s in training_specs(args.references, args.reference_seed)]
    (args.out / REFERENCES_SUBDIR).mkdir(parents=True, exist_ok=True)
    for ref in refs:
        save_reference(ref, description.joints, args.out / REFERENCES_SUBDIR / f"{ref.name}.npz")
    policy = sampling_policy(args.policy, description, args.seed)
    registry = TypeRegistry()
    factory = MessageFactory(registry, description)
    session = RecordingSession(SessionConfig(output_dir=args.out), registry)
    for topic, type_name in TOPICS.items():
        session.set_topic(TopicSpec(topic, type_name))
    rng = np.random.default_rng(args.seed)
    r = Randomization.none() if args.no_randomization else Randomization()
    t0 = time.monotonic()
    successes, steps_total = 0, 0
    try:
        for i in range(args.episodes):
            ref = refs[i % len(refs)]
            policy.reseed(args.seed * 100_003 + i)
            success, path, steps = record_episode(session, factory, policy, ref, backend, description,
                                                  rng.uniform(*r.friction_scale), rng.uniform(*r.mass_scale))
            successes += success
            steps_total += steps
            if (i + 1) % 20 == 0 or i + 1 == args.episodes:
                print(f"{i + 1}/{args.episodes} episodes, {successes} successful, "
                      f"{time.monotonic() - t0:.0f} s", flush=True)
    finally:
        session.close()
    summary = {"command": "dexstack-vgps-collect " + " ".join(argv if argv is not None else sys.argv[1:]),
               "episodes": args.episodes, "successes": successes, "steps": steps_total,
               "wall_s": round(time.monotonic() - t0, 1), "policy": args.policy, "references": len(refs),
               "gate": args.gate, "physics": {"timestep_s": backend.timestep_s, "impratio": float(model.opt.impratio)}}
    (args.out / "collect.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
