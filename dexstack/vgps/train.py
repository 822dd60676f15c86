"""Train a V-GPS critic on recorded episodes and write a critic bundle.

    dexstack-train-vgps --episodes recordings/vgps_train --base track_cube --out policies/track_cube_q

Reads every ``episode_*`` under ``--episodes`` (rosbag2 MCAP from the recorder or ``dexstack-vgps-collect``) into
the base policy's observation layout (:mod:`dexstack.vgps.dataset`), holds back every ``--val-every``-th episode
for validation, trains Cal-QL (``--algorithm iql`` for IQL) with an ensemble of 2 (:mod:`dexstack.vgps.calql`) and
writes into ``--out``: ``critic.yaml`` + ``critic.pt`` (weights and normalisation statistics), ``curves.csv`` (one
row per ``--log-every`` steps, validation columns included) and ``train.json`` (the exact command, seed, config,
data figures, wall time).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=Path, required=True, help="folder of episode_* recordings")
    parser.add_argument("--base", default="track_cube", help="the stochastic policy bundle the critic re-ranks")
    parser.add_argument("--out", type=Path, required=True, help="critic bundle folder to write")
    parser.add_argument("--name", default="", help="critic name (default: the --out folder's name)")
    parser.add_argument("--algorithm", choices=("calql", "iql"), default="calql")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--cql-actions", type=int, default=4, help="actions per source in the CQL term")
    parser.add_argument("--cql-alpha", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.98)
    parser.add_argument("--val-every", type=int, default=10, help="every n-th episode is validation (0: none)")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dexstack.policies import PolicyError, load_policy  # noqa: PLC0415
    from dexstack.policies.bundles import load_bundle_manifest  # noqa: PLC0415
    from dexstack.policies.vgps import load_log_std  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415
    from dexstack.vgps.calql import CriticTrainer, GaussianPolicy, TrainConfig  # noqa: PLC0415
    from dexstack.vgps.critic import save_critic, spec_for  # noqa: PLC0415
    from dexstack.vgps.dataset import load_transitions  # noqa: PLC0415

    t_start = time.monotonic()
    try:
        manifest = load_bundle_manifest(args.base)
        description = load_description(manifest.robot_profile)
        base = load_policy(args.base, description)
        log_std = load_log_std(manifest, base.action.size, "cpu")
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        data = load_transitions(args.episodes, manifest, description, args.gamma)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_ep = data.episodes
    is_val = np.zeros(n_ep, dtype=bool)
    if args.val_every > 0 and n_ep >= 2 * args.val_every:
        is_val[:: args.val_every] = True
    train, val = data.subset(~is_val), data.subset(is_val)
    print(f"{n_ep} episodes ({data.successes} successful), {len(data)} steps; train {train.episodes} episodes, "
          f"validation {val.episodes}; skipped {len(data.skipped)}", flush=True)
    config = TrainConfig(algorithm=args.algorithm, steps=args.steps, batch_size=args.batch_size,
                         cql_alpha=args.cql_alpha, cql_actions=args.cql_actions, seed=args.seed,
                         log_every=args.log_every)
    name = args.name or args.out.resolve().name
    spec = spec_for(manifest, base.action.size, data.tasks, name, gamma=args.gamma, hidden=tuple(args.hidden),
                    algorithm=args.algorithm, info={"episodes": train.episodes, "successes": train.successes,
                                                    "steps": len(train), "source": str(args.episodes)})
    policy = GaussianPolicy(base.network.module, base.network.normalizer, log_std)
    trainer = CriticTrainer(spec, train, policy, config)
    rows = trainer.train(val, log=lambda r: print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                              for k, v in r.items()}), flush=True))
    save_critic(trainer.net, args.out)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("step", "wall_s"), k))
    with open(args.out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    report = {"command": "dexstack-train-vgps " + " ".join(argv if argv is not None else sys.argv[1:]),
              "seed": args.seed, "base_policy": manifest.name, "config": dataclasses.asdict(config),
              "hidden": args.hidden, "gamma": args.gamma, "torch": torch.__version__,
              "data": {"episodes": n_ep, "successes": data.successes, "steps": len(data), "tasks": list(data.tasks),
                       "train_episodes": train.episodes, "validation_episodes": val.episodes,
                       "skipped": data.skipped},
              "final": rows[-1], "wall_s": round(time.monotonic() - t_start, 1)}
    (args.out / "train.json").write_text(json.dumps(report, indent=1))
    print(f"critic written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
