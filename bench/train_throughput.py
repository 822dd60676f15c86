#!/usr/bin/env python3
"""Training throughput of the tracking trainer (one JSON line).

    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/train_throughput.py --seconds 60
    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/train_throughput.py --seconds 60 --envs 128 --timestep 0.01

Keys: ``cpu_samples_per_s`` (PPO training samples per second on this machine, everything included: physics
workers, the safety gate in the loop, task layer, policy, PPO update, no validation), ``cpu_cpu_ms_per_sample``
(CPU time of all processes per sample: independent of other load on a shared machine), ``cpu_env_steps_per_s``
(env only: the same vector env stepped with zero actions, no learning), ``env_cpu_ms_per_step`` (CPU ms per env
step of the command path - the safety gate - and of the physics, with the gate and without),
``cpu_samples_per_s_gate_off``,
``mjwarp_cpu_state_err`` (max |qpos| difference, rad or m, between MuJoCo Warp on Warp's CPU device and the MuJoCo
C backend after ``--mjwarp-steps`` physics steps of the same controls; null if mujoco_warp is missing),
``gpu_samples_per_s`` / ``gpu_device`` (null without a GPU), ``heldout_success_before`` / ``heldout_success_after``
(in-process evaluation through the policy runtime on the held-out references, the physics behind the gate:
``--before`` vs ``--after`` bundles), ``baseline_samples_per_s`` (the old trainer's recorded figure, from the
``--before`` bundle's train.json when it describes an old-trainer run). ``--timestep-sweep`` adds
``timestep_sweep``: per physics timestep, the replayed reference's joint and object error vs 1 ms and whether it
stayed finite. ``gate``, ``groups``, ``envs``, ``workers``, ``timestep_s``: the configuration measured (the trainer's
per-sample costs fall with more envs per call: the task layer, policy and gate bookkeeping run once per batch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def training_rate(seconds: float, gate: str, envs: int, workers: int, groups: int = 2,
                  timestep_s: float = 0.005) -> dict:
    """PPO samples/s: a time-limited training run without validation (separate process: its CPU time is counted)."""
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    code = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from dexstack.policies.tracking import trainer\n"
        f"c = trainer.TrainConfig(minutes={seconds / 60.0}, envs={envs}, workers={workers}, groups={groups},"
        f" gate='{gate}', timestep_s={timestep_s},"
        " validate_every_s=1e9, validation_references=1)\n"
        "s = trainer.train(c, Path(sys.argv[1]), progress=False, log=lambda *a: None)\n"
        "print(json.dumps({'samples': s['samples'], 'wall_s': s['wall_s']}))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"samples_per_s": result["samples"] / result["wall_s"],
            "cpu_ms_per_sample_upper": 1000.0 * cpu / max(result["samples"], 1)}


def env_rate(seconds: float, gate: str, envs: int, workers: int, timestep_s: float = 0.005) -> float:
    from dexstack.policies.manifest import parse_manifest  # noqa: PLC0415
    from dexstack.policies.tracking.cpu_backend import CommandPath, WorkerPool  # noqa: PLC0415
    from dexstack.policies.tracking.references import BASE_SPECS, cached_reference  # noqa: PLC0415
    from dexstack.policies.tracking.task import TrackingTask  # noqa: PLC0415
    from dexstack.policies.tracking.trainer import tracking_manifest  # noqa: PLC0415
    from dexstack.policies.tracking.vec_env import VecTrackingEnv  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    d = load_description("panda_allegro")
    m = parse_manifest(tracking_manifest(len(d.arm_joints), len(d.hand_joints)))
    task = TrackingTask(m, d, [cached_reference(s, d) for s in BASE_SPECS.values()])
    pool = WorkerPool(envs, m.period_s, workers, CommandPath(gate=gate, timestep_s=timestep_s))
    try:
        env = VecTrackingEnv(task, pool, envs)
        env.reset()
        zero = torch.zeros(envs, task.action_size)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            env.step(zero)
            steps += envs
        return steps / (time.perf_counter() - t0)
    finally:
        pool.close()


def env_cost_breakdown(gate: str, envs: int = 16, periods: int = 40, timestep_s: float = 0.005) -> dict:
    """CPU ms per environment step (one 50 ms control period) of the two halves of the CPU backend, in this process
    (``process_time``: the figure does not move with other load): the command path (the safety gate's 5 ticks and
    its ruckig filters, in Python per env) and the physics (one ``mujoco.rollout`` call for all envs)."""
    from dexstack.policies.tracking.cpu_backend import CommandPath, MujocoBatch  # noqa: PLC0415

    batch = MujocoBatch(envs, 0.05, CommandPath.ideal(gate, timestep_s))
    lim = batch.description.limit_arrays()
    q0 = np.tile((lim["lower"] + lim["upper"]) / 2, (envs, 1))
    batch.reset(np.arange(envs), q0, np.tile([0.5, 0.0, 0.05, 0.0, 0.0, 0.0, 1.0], (envs, 1)), np.ones(envs),
                np.ones(envs))
    rng = np.random.default_rng(0)
    command_s = physics_s = 0.0
    for _ in range(periods):
        targets = q0 + rng.normal(0.0, 0.02, q0.shape)
        t0 = time.process_time()
        batch._controls(targets)
        t1 = time.process_time()
        batch.step_physics()
        physics_s += time.process_time() - t1
        command_s += t1 - t0
    return {"command_path_ms": round(1e3 * command_s / (periods * envs), 3),
            "physics_ms": round(1e3 * physics_s / (periods * envs), 3)}


def timestep_sweep(timesteps=(0.001, 0.002, 0.0025, 0.005, 0.01)) -> list[dict]:
    """Replay the lift reference (zero residual, no gate) at each physics timestep; error vs 1 ms."""
    from dexstack.policies import load_reference, reference_path  # noqa: PLC0415
    from dexstack.policies.tracking.cpu_backend import CommandPath, MujocoBatch  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    d = load_description("panda_allegro")
    results, runs = [], {}
    for name in ("lift", "push", "rotate"):
        ref = load_reference(reference_path(name), d)
        for dt in timesteps:
            batch = MujocoBatch(1, 0.05, CommandPath.ideal("off", dt))
            t = np.arange(0.0, ref.duration_s, 0.05)
            batch.reset(np.array([0]), ref.q_at(0.0)[None], ref.object_pose_at(0.0)[None], np.ones(1), np.ones(1))
            qs, objs, t0 = [], [], time.perf_counter()
            for ti in t:
                out = batch.step(ref.q_at(ti + 0.05)[None])
                qs.append(out["q"][0].copy())
                objs.append(out["object_pose"][0].copy())
            runs[(name, dt)] = (np.array(qs), np.array(objs), (time.perf_counter() - t0) / len(t))
    for dt in timesteps:
        q_err, obj_err, finite, cost = [], [], True, []
        for name in ("lift", "push", "rotate"):
            q, obj, c = runs[(name, dt)]
            q1, obj1, _ = runs[(name, timesteps[0])]
            finite &= bool(np.all(np.isfinite(q)) and np.all(np.isfinite(obj)))
            q_err.append(float(np.max(np.abs(q - q1))))
            obj_err.append(float(np.max(np.linalg.norm(obj[:, :3] - obj1[:, :3], axis=1))))
            cost.append(c)
        results.append({"timestep_s": dt, "finite": finite, "max_joint_err_rad": round(max(q_err), 5),
                        "max_object_err_m": round(max(obj_err), 5),
                        "ms_per_control_step": round(1e3 * np.mean(cost), 3)})
    return results


def mjwarp_state_error(steps: int) -> float | None:
    import contextlib  # noqa: PLC0415

    try:
        from dexstack.policies.tracking.mjwarp_backend import state_error_vs_c  # noqa: PLC0415
    except ImportError:
        return None
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the one JSON line only
        return state_error_vs_c(steps)


def heldout(bundle: str, gate: str) -> float:
    from dexstack.policies.tracking.trainer import evaluate_heldout  # noqa: PLC0415

    return evaluate_heldout(bundle, gate=gate)["success_rate"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="per throughput measurement")
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--groups", type=int, default=2, help="env groups (trainer's --groups; 1: synchronous)")
    parser.add_argument("--gate", default="limits", choices=("full", "limits", "off"))
    parser.add_argument("--timestep", type=float, default=0.005, help="physics timestep (s) of the training runs")
    parser.add_argument("--before", default="", help="bundle evaluated as 'before' (e.g. the old track_cube)")
    parser.add_argument("--after", default="", help="bundle evaluated as 'after'")
    parser.add_argument("--mjwarp-steps", type=int, default=20)
    parser.add_argument("--timestep-sweep", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result: dict = {}
    train = training_rate(args.seconds, args.gate, args.envs, args.workers, args.groups, args.timestep)
    result["cpu_samples_per_s"] = round(train["samples_per_s"], 1)
    result["cpu_cpu_ms_per_sample"] = round(train["cpu_ms_per_sample_upper"], 3)
    result["cpu_samples_per_s_gate_off"] = round(training_rate(args.seconds, "off", args.envs, args.workers,
                                                               args.groups, args.timestep)["samples_per_s"], 1)
    result["cpu_env_steps_per_s"] = round(env_rate(args.seconds / 2, args.gate, args.envs, args.workers,
                                                   args.timestep), 1)
    result["gate"], result["groups"] = args.gate, args.groups
    result["envs"], result["workers"], result["timestep_s"] = args.envs, args.workers, args.timestep
    result["env_cpu_ms_per_step"] = {g: env_cost_breakdown(g, timestep_s=args.timestep) for g in (args.gate, "off")}
    result["mjwarp_cpu_state_err"] = mjwarp_state_error(args.mjwarp_steps)
    result["gpu_samples_per_s"] = None
    result["gpu_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    result["heldout_success_before"] = heldout(args.before, args.gate) if args.before else None
    result["heldout_success_after"] = heldout(args.after, args.gate) if args.after else None
    old = Path(args.before or REPO / "policies" / "track_cube") / "train.json"
    if old.is_file():
        info = json.loads(old.read_text())
        if "samples" in info and "wall_s" in info:
            result["baseline_samples_per_s"] = round(info["samples"] / info["wall_s"], 1)
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    if args.timestep_sweep:
        result["timestep_sweep"] = timestep_sweep()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
