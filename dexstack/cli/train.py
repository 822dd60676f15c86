"""Train a learned controller in simulation and write a policy bundle.

    dexstack-train tracking --backend cpu --minutes 20 --seed 0 --out policies/track_cube

Tasks: ``tracking`` (DexTrack-style residual tracking of cube references; ``grasp`` and ``vgps`` are not
implemented yet and are refused). Backends: ``cpu`` (MuJoCo C, N environments in worker processes behind the
safety gate, dexstack.policies.tracking.cpu_backend), ``mjwarp`` (MuJoCo Warp; on a GPU with ``--device cuda``,
else Warp's CPU device: slow, for checks), ``isaacgym`` (refused here: Isaac Gym needs an NVIDIA GPU and its
own install; the IsaacGymEnvs task and rl_games config live in dexstack.policies.tracking.isaacgym_task).

Several ``--seed`` values train one after the other (each ``--minutes`` long) into ``OUT/seed_<k>/``; the seed
with the best *validation* success is copied to ``OUT``. Checkpoints are selected on validation references
(references.validation_specs); the held-out references (policies/references/heldout_*.npz) are only evaluated at
the end and reported in ``OUT/train.json`` with the curves (``curves.csv``, ``curves.png``).

From human demos (docs/demos.md): ``--references refs/*.npz`` (dexstack-demo2ref output) replaces the designed
references, ``--val-references`` the validation set (default: the training references), e.g.

    dexstack-train tracking --references refs/train/*.npz --val-references refs/val/*.npz \
        --object-start-noise 0.015 0.15 --init track_cube --no-heldout --out policies/track_demos
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

TASKS = ("tracking", "grasp", "vgps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--backend", default="cpu", choices=("cpu", "mjwarp", "isaacgym"))
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget per seed")
    parser.add_argument("--iterations", type=int, default=0, help="stop after this many PPO iterations instead")
    parser.add_argument("--seed", type=int, action="append", help="repeat for several seeds (default: 0)")
    parser.add_argument("--out", default="policies/track_cube")
    parser.add_argument("--envs", type=int, default=32, help="parallel environments")
    parser.add_argument("--workers", type=int, default=2, help="cpu backend: physics processes")
    parser.add_argument("--groups", type=int, default=2,
                        help="cpu backend: env groups stepped in turn (the learner acts for one while the workers "
                             "step the other; 1: synchronous)")
    parser.add_argument("--steps", type=int, default=32, help="steps per environment per PPO iteration")
    parser.add_argument("--gate", default="limits", choices=("full", "limits", "off"),
                        help="cpu backend: safety gate in the loop (see cpu_backend.CommandPath)")
    parser.add_argument("--train-references", type=int, default=24, help="sampled training references (+3 base)")
    parser.add_argument("--validation-references", type=int, default=6)
    parser.add_argument("--timestep", type=float, default=0.005, help="physics timestep (s)")
    parser.add_argument("--validate-every", type=float, default=60.0, help="seconds between validation runs")
    parser.add_argument("--device", default="cpu", help="torch/warp device (mjwarp: cuda on a GPU)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-heldout", action="store_true", help="skip the final held-out evaluation")
    parser.add_argument("--references", nargs="+", default=[], help="train on these reference files (from demos)")
    parser.add_argument("--val-references", nargs="+", default=[], help="validation reference files")
    parser.add_argument("--object-start-noise", nargs=2, type=float, default=(0.0, 0.0), metavar=("XY_M", "YAW_RAD"),
                        help="randomise the object's start around the reference's (uniform +/-)")
    parser.add_argument("--init", default="", help="fine-tune from this tracking bundle's actor (e.g. track_cube)")
    parser.add_argument("--init-std", type=float, default=0.0,
                        help="with --init: exploration action std to start from (default: the bundle's)")
    parser.add_argument("--critic-warmup", type=int, default=0,
                        help="with --init: PPO iterations training only the fresh critic before the actor moves")
    parser.add_argument("--learning-rate", type=float, default=0.0,
                        help="PPO's starting learning rate (default 3e-4; adapted on the KL); fine-tuning: ~1e-5")
    parser.add_argument("--desired-kl", type=float, default=0.0, help="PPO's KL target (default 0.01)")
    parser.add_argument("--freeze-normalizer", action="store_true",
                        help="with --init: keep the bundle's observation statistics")
    parser.add_argument("--object-drop-prob", type=float, default=-1.0,
                        help="fraction of control periods without a fresh object pose (default: the backend's 0.2)")
    parser.add_argument("--object-drop-burst", type=float, default=0.0,
                        help="mean run (control periods) of missing object poses (0: independent drops)")
    parser.add_argument("--name", default="", help="bundle name in the manifest (default: the --out folder's)")
    args = parser.parse_args(argv)
    if args.task != "tracking":
        print(f"dexstack-train: task '{args.task}' is not implemented yet (only 'tracking')", file=sys.stderr)
        return 2

    from dexstack.policies.tracking import trainer  # noqa: PLC0415

    seeds = args.seed or [0]
    out = Path(args.out)
    summaries = []
    try:
        for seed in seeds:
            config = trainer.TrainConfig(backend=args.backend, minutes=args.minutes, iterations=args.iterations,
                                         seed=seed, envs=args.envs, workers=args.workers, groups=args.groups,
                                         steps=args.steps,
                                         gate=args.gate, timestep_s=args.timestep,
                                         train_references=args.train_references,
                                         validation_references=args.validation_references,
                                         validate_every_s=args.validate_every, device=args.device,
                                         reference_files=tuple(args.references),
                                         validation_files=tuple(args.val_references),
                                         object_start_xy_m=args.object_start_noise[0],
                                         object_start_yaw_rad=args.object_start_noise[1],
                                         name=args.name or out.name, init_bundle=args.init,
                                         init_std=args.init_std, critic_warmup=args.critic_warmup,
                                         learning_rate=args.learning_rate, desired_kl=args.desired_kl,
                                         freeze_normalizer=args.freeze_normalizer,
                                         object_drop_prob=args.object_drop_prob,
                                         object_drop_burst_periods=args.object_drop_burst)
            summary = trainer.train(config, out / f"seed_{seed}", progress=not args.no_progress)
            print(json.dumps({"seed": seed, "samples": summary["samples"], "samples_per_s": summary["samples_per_s"],
                              "best_validation": summary["best"]}), flush=True)
            summaries.append(summary)
    except (ValueError, RuntimeError) as exc:
        print(f"dexstack-train: {exc}", file=sys.stderr)
        return 2
    best = trainer.select_best_seed(summaries, out)
    info = {"command": " ".join(["dexstack-train", *(argv if argv is not None else sys.argv[1:])]),
            "selected_seed": best["seed"], "selection": "best validation success (then lower mean max error)",
            "seeds": summaries, "train_config_fields": [f.name for f in fields(trainer.TrainConfig)]}
    if not args.no_heldout:
        info["heldout"] = {"tracking": trainer.evaluate_heldout(out, gate=args.gate),
                           "replay": trainer.evaluate_heldout("replay", gate=args.gate)}
        print(json.dumps({"heldout_success": info["heldout"]["tracking"]["success_rate"],
                          "replay_success": info["heldout"]["replay"]["success_rate"]}), flush=True)
    trainer.write_report(out, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
