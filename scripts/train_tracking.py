#!/usr/bin/env python3
"""Train the DexTrack-style tracking policy in the sim cell with PPO and write a policy bundle.

    .venv/bin/python scripts/train_tracking.py --minutes 20 --seed 0 --out policies/track_cube

Two worker processes step the MuJoCo cell (dexstack.policies.tracking.physics, the model SimCell builds) for
``--envs`` environments each; the main process runs the policy and the PPO update (dexstack.policies.tracking.ppo).
Training references are sampled lift/push/rotate variants (references.training_specs); the held-out set
(references.HELD_OUT, policies/references/heldout_*.npz) is only used for the final evaluation. Domain
randomisation: object friction and mass, observation noise (env.Randomization).

Writes into ``--out``: ``policy.yaml`` (the manifest, with the observation/action layout used here),
``model.pt`` (rl_games-format checkpoint: actor + running observation statistics), ``curves.csv`` (one row per
iteration), ``train.json`` (command, seed, config, wall time, final held-out evaluation vs open-loop replay).
This is a script, not a test: a run takes as long as ``--minutes`` says.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

N_ARM_SCALE, N_HAND_SCALE = 0.04, 0.2  # residual range (rad) per unit action: arm, hand


def manifest(n_arm: int, n_hand: int, rate_hz: float, hidden: tuple[int, ...]) -> dict:
    n = n_arm + n_hand
    return {
        "name": "track_cube",
        "type": "tracking",
        "description": "DexTrack-style residual tracking of lift/push/rotate cube references (PPO in the sim cell).",
        "robot_profile": "panda_allegro",
        "control_rate_hz": rate_hz,
        "reference": "lift",
        "checkpoint": {"file": "model.pt", "format": "rl_games", "hidden": list(hidden), "activation": "elu"},
        "observation": [
            {"name": "joint_pos", "size": n},
            {"name": "joint_vel", "size": n, "scale": 0.1},
            {"name": "object_pose", "size": 7},
            {"name": "ref_joint_pos", "size": 3 * n, "steps": [1, 2, 4], "relative": True},
            {"name": "ref_object_pose", "size": 21, "steps": [0, 2, 4], "relative": True},
            {"name": "last_action", "size": n},
        ],
        "action": {"mode": "residual", "joints": "all", "clip": 1.0,
                   "scale": [N_ARM_SCALE] * n_arm + [N_HAND_SCALE] * n_hand},
    }


# ------------------------------------------------------------------------------------------------ workers
def worker(conn, manifest_yaml: dict, specs, n_envs: int, seed: int) -> None:
    torch.set_num_threads(1)
    from dexstack.policies.manifest import parse_manifest
    from dexstack.policies.tracking.env import TrackingEnv
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.policies.tracking.references import make_reference
    from dexstack.robot import load_description

    description = load_description("panda_allegro")
    m = parse_manifest(manifest_yaml)
    references = [make_reference(spec, description) for spec in specs]
    envs = [TrackingEnv(m, description, CellBackend(), references, seed=seed * 1000 + i) for i in range(n_envs)]
    conn.send(("ready", len(references)))
    while True:
        command, payload = conn.recv()
        if command == "reset":
            conn.send(np.stack([env.reset() for env in envs]))
        elif command == "step":
            obs, rewards, dones, successes, ends = [], [], [], [], []
            for env, action in zip(envs, payload):
                o, r, d, info = env.step(action)
                if d:
                    successes.append(float(info["success"]))
                    ends.append(env.reference.kind)
                    o = env.reset()
                obs.append(o)
                rewards.append(r)
                dones.append(float(d))
            conn.send((np.stack(obs), np.array(rewards), np.array(dones), successes, ends))
        elif command == "close":
            conn.close()
            return


class Workers:
    def __init__(self, manifest_yaml: dict, specs, n_workers: int, envs_per_worker: int, seed: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for w in range(n_workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(child, manifest_yaml, specs[w::n_workers], envs_per_worker,
                                                    seed + w), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv()[0] == "ready"

    def reset(self) -> np.ndarray:
        for conn in self.conns:
            conn.send(("reset", None))
        return np.concatenate([conn.recv() for conn in self.conns])

    def step(self, actions: np.ndarray):
        chunks = np.array_split(actions, len(self.conns))
        for conn, chunk in zip(self.conns, chunks):
            conn.send(("step", chunk))
        parts = [conn.recv() for conn in self.conns]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]), sum((p[3] for p in parts), []), sum((p[4] for p in parts), []))

    def close(self) -> None:
        for conn in self.conns:
            conn.send(("close", None))
        for proc in self.procs:
            proc.join(timeout=5)


# ------------------------------------------------------------------------------------------------ main
def export(model, out: Path, manifest_yaml: dict) -> None:
    from dexstack.policies.checkpoints import save_rl_games_checkpoint
    from dexstack.policies.manifest import write_manifest

    save_rl_games_checkpoint(out / "model.pt", model.actor, model.normalizer.mean, model.normalizer.var,
                             model.log_std)
    write_manifest(manifest_yaml, out)


def evaluate_bundle(out: Path) -> dict:
    from dexstack.policies import list_references, load_policy, load_reference, reference_path
    from dexstack.policies.tracking.env import evaluate
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.robot import load_description

    description = load_description("panda_allegro")
    backend = CellBackend()
    refs = [load_reference(reference_path(n), description) for n in sorted(list_references()) if n.startswith("heldout_")]
    report = {}
    for name, policy in (("tracking", load_policy(str(out), description)), ("replay", load_policy("replay", description))):
        results = evaluate(policy, refs, backend, description)
        report[name] = {"success_rate": float(np.mean([r.success for r in results])),
                        "episodes": [asdict(r) for r in results]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget")
    parser.add_argument("--iterations", type=int, default=0,
                        help="stop after this many PPO iterations instead (reproduces a run exactly; 0: time budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="policies/track_cube")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs", type=int, default=8, help="environments per worker")
    parser.add_argument("--steps", type=int, default=32, help="steps per environment per iteration")
    parser.add_argument("--train-references", type=int, default=24)
    parser.add_argument("--rate-hz", type=float, default=20.0)
    args = parser.parse_args(argv)

    from dexstack.policies.tracking.ppo import PPO, ActorCritic, PPOConfig, numpy_obs
    from dexstack.policies.tracking.references import BASE_SPECS, training_specs
    from dexstack.robot import load_description

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(1)
    description = load_description("panda_allegro")
    config = PPOConfig()
    manifest_yaml = manifest(len(description.arm_joints), len(description.hand_joints), args.rate_hz, config.hidden)
    specs = list(BASE_SPECS.values()) + training_specs(args.train_references, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    workers = Workers(manifest_yaml, specs, args.workers, args.envs, args.seed)
    print(f"workers ready in {time.monotonic() - start:.1f} s ({len(specs)} training references)", flush=True)

    obs = workers.reset()
    model = ActorCritic(obs.shape[1], len(description.joints), config)
    ppo = PPO(model, config)
    n_envs = obs.shape[0]
    curves = open(out / "curves.csv", "w", newline="")  # noqa: SIM115
    writer = csv.writer(curves)
    writer.writerow(["iteration", "wall_s", "samples", "mean_reward", "episodes", "success_rate", "value_loss", "kl",
                     "lr", "std"])
    deadline = start + 60.0 * args.minutes
    iteration, samples = 0, 0
    recent_success: list[float] = []
    while (iteration < args.iterations) if args.iterations else (time.monotonic() < deadline):
        buf = {k: [] for k in ("obs", "actions", "log_probs", "values", "rewards", "dones")}
        finished = []
        for _ in range(args.steps):
            obs_t = numpy_obs(obs)
            model.normalizer.update(obs_t)
            obs_t = model.normalizer(obs_t)
            actions, log_probs, values = model.act(obs_t)
            next_obs, rewards, dones, successes, _ = workers.step(actions.numpy())
            for key, value in (("obs", obs_t), ("actions", actions), ("log_probs", log_probs), ("values", values),
                               ("rewards", numpy_obs(rewards)), ("dones", numpy_obs(dones))):
                buf[key].append(value)
            finished += successes
            obs = next_obs
        with torch.no_grad():
            last_values = model.critic(model.normalizer(numpy_obs(obs))).squeeze(-1)
        stats = ppo.update(*(torch.stack(buf[k]) for k in ("obs", "actions", "log_probs", "values", "rewards",
                                                             "dones")), last_values)
        iteration += 1
        samples += args.steps * n_envs
        recent_success = (recent_success + finished)[-100:]
        mean_reward = float(torch.stack(buf["rewards"]).mean())
        success_rate = float(np.mean(recent_success)) if recent_success else 0.0
        writer.writerow([iteration, round(time.monotonic() - start, 1), samples, round(mean_reward, 4), len(finished),
                         round(success_rate, 3), round(stats["value_loss"], 5), round(stats["kl"], 5),
                         f"{stats['lr']:.2e}", round(stats["std"], 4)])
        curves.flush()
        if iteration % 10 == 0:
            print(f"it {iteration:4d} {time.monotonic() - start:6.0f} s samples {samples:7d} reward {mean_reward:.3f} "
                  f"success(last 100 episodes) {success_rate:.2f} std {stats['std']:.3f} kl {stats['kl']:.4f}",
                  flush=True)
            export(model, out, manifest_yaml)
    workers.close()
    curves.close()
    export(model, out, manifest_yaml)
    wall = time.monotonic() - start
    print(f"trained {iteration} iterations, {samples} samples in {wall:.0f} s; evaluating on held-out references",
          flush=True)
    report = evaluate_bundle(out)
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "seed": args.seed, "args": vars(args),
            "ppo": asdict(config), "iterations": iteration, "samples": samples, "wall_s": round(wall, 1),
            "torch": torch.__version__, "heldout": report}
    (out / "train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({"tracking_success": report["tracking"]["success_rate"],
                      "replay_success": report["replay"]["success_rate"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
