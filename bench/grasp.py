"""Grasp benchmark (issue 12): functional retargeting + the open-loop kinematic baseline in the MuJoCo cell.

    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/grasp.py --poses 2

For every shipped object (train and held-out splits, ``config/objects/*.yaml``), every human grasp of its library
(``config/grasps/``) and ``--poses`` object placements on the table (position and yaw varied, seeded): retarget
the human grasp to the Allegro (timed), then run the baseline (pre-grasp, approach, close, lift 10 cm, hold 2 s;
every command through the safety gate). The object pose is the simulator's (the retargeting works in the object
frame; perception of the pose is exercised by ``dexstack-grasp-target``).

The grasp policy (``--policy``, default the shipped ``fungrasp_allegro``; ``--policy ''`` skips it) runs on its own
placements of the same library grasps (``--poses`` per grasp, seed ``20000 + --seed``: never the training or
validation placements), in the MuJoCo grasp cell at ``--timestep-s`` (the cell's 1 ms by default; training used
5 ms) behind the full safety gate, no latency, the simulator's object pose: its network as the runtime loads it
(normaliser, clip, observation history) on the batched task's observation (equal to the runtime's field by field,
tests/unit/test_grasp_policy.py). The same episodes are also run with a zero residual (the planned grasp alone:
the open-loop baseline on the policy's physics), ``zero_residual_success``. Placements whose arm plan fails count
as failures for both.

Prints one JSON line: heldout_success, train_success (the policy; null without one), zero_residual_success(_train,
_heldout), policy_trials, policy_unplanned, kinematic_success (all trials),
kinematic_success_train, kinematic_success_heldout, contact_match (fraction of human contact fingers whose robot
counterpart touches the object in the sim after the close), retarget_contact_match (the same, kinematically, at
the retargeted target), retarget_ms (median), retarget_ms_p95, n_heldout_objects, n_objects, trials,
unreachable (trials whose palm poses the arm cannot reach: counted as failures), blocked_by_table (trials with
a robot body on the table after the close), per_object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from dexstack.control.commands import CommandError  # noqa: E402
from dexstack.grasp.baseline import OpenLoopGrasp, UnreachableError  # noqa: E402
from dexstack.grasp.human_grasps import library  # noqa: E402
from dexstack.grasp.verify import VerifiedRetargeter  # noqa: E402
from dexstack.perception.objects import known_objects, load_object_model  # noqa: E402
from dexstack.retarget.functional import FunctionalRetargeter, GraspRetargetError  # noqa: E402
from dexstack.sim.cell import SimCell  # noqa: E402
from dexstack.sim.config import load_cell_config, with_object  # noqa: E402
from dexstack.transforms import matrix_to_quat_xyzw, rpy_to_matrix  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poses", type=int, default=2, help="object placements per grasp")
    parser.add_argument("--objects", nargs="*", default=None, help="object names (default: every shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", default="fungrasp_allegro", help="grasp bundle ('' to skip)")
    parser.add_argument("--timestep-s", type=float, default=0.001, help="physics timestep of the policy trials")
    parser.add_argument("--skip-kinematic", action="store_true", help="only the policy (and its zero residual)")
    parser.add_argument("--no-verify", action="store_true",
                        help="the plain retargeting, not the first candidate that lifts in the simulated check")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    retargeter = FunctionalRetargeter()
    verifier = None if args.no_verify else VerifiedRetargeter()
    names = args.objects or known_objects()
    cell = load_cell_config("tabletop_grasp")
    rows, per_object = [], {}
    for name in ([] if args.skip_kinematic else names):
        model = load_object_model(name)
        sim = SimCell(with_object(cell, name), with_camera=False)
        baseline = OpenLoopGrasp(sim, finger_links=retargeter.config.finger_links)
        obj_rows = []
        for grasp in library(name):
            for _ in range(args.poses):
                xy = np.array([0.5, 0.0]) + rng.uniform([-0.05, -0.08], [0.05, 0.08])
                yaw = rng.uniform(-0.3, 0.3)
                z = float(model.extents_m[2]) / 2 + 1e-4
                sim.place_object([*xy, z, *matrix_to_quat_xyzw(rpy_to_matrix([0.0, 0.0, yaw]))])
                sim.reset()
                sim.step(200)
                row = {"object": name, "split": model.split, "kind": grasp.kind, "success": False}
                try:
                    if verifier is None:
                        target = retargeter.retarget(model, grasp.keypoints_object_m, table_z_m=-z)
                    else:  # the object-frame choice is made once per human grasp (memoised), at a nominal pose
                        checked = verifier.retarget(model, grasp.keypoints_object_m, table_z_m=-z)
                        target = checked.target
                        row.update(verified=checked.verified, candidate=checked.candidate,
                                   verify_ms=round(checked.verify_ms))
                    row.update(retarget_ms=target.retarget_ms, retarget_contact_match=target.contact_match)
                    result = baseline.run(target)
                    row.update(success=result.success, rise_m=round(result.rise_m, 4),
                               slip_m=round(result.slip_m, 4), contact_match=result.contact_match,
                               blocked_by_table=bool(result.blocked_by_table))
                except (UnreachableError, CommandError) as exc:  # CommandError: the gate refused a command
                    row.update(unreachable=True, error=str(exc))
                except GraspRetargetError as exc:
                    row.update(error=str(exc))
                obj_rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        rows += obj_rows
        per_object[name] = {"split": model.split, "trials": len(obj_rows),
                            "kinematic_success": _mean([r["success"] for r in obj_rows])}

    def rate(split=None):
        return _mean([r["success"] for r in rows if split is None or r["split"] == split])

    ms = [r["retarget_ms"] for r in rows if "retarget_ms" in r]
    policy = (evaluate_policy(args.policy, names, args.poses, args.seed, args.timestep_s, verifier)
              if args.policy else {})
    verify_ms = list({(r["object"], r["kind"]): r["verify_ms"] for r in rows if "verify_ms" in r}.values())
    print(json.dumps({
        "heldout_success": policy.get("heldout_success"), "train_success": policy.get("train_success"),
        **{k: v for k, v in policy.items() if k not in ("heldout_success", "train_success")},
        "kinematic_success": rate(), "kinematic_success_train": rate("train"),
        "kinematic_success_heldout": rate("heldout"),
        "contact_match": _mean([r["contact_match"] for r in rows if "contact_match" in r]),
        "retarget_contact_match": _mean([r["retarget_contact_match"] for r in rows if "retarget_contact_match" in r]),
        "retarget_ms": round(float(np.median(ms)), 1) if ms else None,
        "retarget_ms_p95": round(float(np.percentile(ms, 95)), 1) if ms else None,
        "verify": verifier is not None,
        "verified_grasps": len({(r["object"], r["kind"]) for r in rows if r.get("verified")}),
        "verify_ms_median": round(float(np.median(verify_ms))) if verify_ms else None,
        "n_heldout_objects": sum(load_object_model(n).split == "heldout" for n in names),
        "n_objects": len(names), "trials": len(rows),
        "unreachable": sum(bool(r.get("unreachable")) for r in rows),
        "blocked_by_table": sum(bool(r.get("blocked_by_table")) for r in rows),
        "per_object": per_object,
    }))
    return 0


def evaluate_policy(bundle: str, names: list[str], poses: int, seed: int, timestep_s: float, verifier) -> dict:
    """The grasp policy and its zero residual on the same episodes (see the module doc)."""
    import time

    import torch

    from dexstack.grasp.human_grasps import library
    from dexstack.policies import load_policy
    from dexstack.policies.grasp.bank import build_episodes
    from dexstack.policies.grasp.env import VecGraspEnv
    from dexstack.policies.grasp.physics import MultiObjectBatch
    from dexstack.policies.grasp.task import GraspTask
    from dexstack.policies.grasp.trainer import validate
    from dexstack.policies.tracking.cpu_backend import CommandPath
    from dexstack.policies.tracking.task import Randomization
    from dexstack.robot import load_description

    torch.set_num_threads(1)
    d = load_description("panda_allegro")
    policy = load_policy(bundle, d)
    history = int(policy.manifest.params.get("history", 1))
    objects = [n for n in names if library(n)]
    episodes, counts = build_episodes(objects, poses, 20_000 + seed, d, verifier=verifier)
    task = GraspTask(policy.manifest, d, episodes, randomization=Randomization.none())
    backend = MultiObjectBatch([e.object_name for e in episodes], policy.manifest.period_s, task.link_names,
                               CommandPath.ideal("full", timestep_s))
    env = VecGraspEnv(task, backend, auto_reset=False)

    def act(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.stack([policy.network(row.numpy()) for row in x]), dtype=torch.float32)

    t0 = time.monotonic()
    learned = validate(env, act, history)["per_episode"]
    zero = validate(env, lambda x: torch.zeros(x.shape[0], task.action_size), history)["per_episode"]
    split = {n: load_object_model(n).split for n in objects}
    unplanned = {s: sum(counts_per for o, counts_per in _unplanned(objects, poses, episodes).items()
                        if split[o] == s) for s in ("train", "heldout")}

    def rate(values, s=None):
        ok = [v for v, e in zip(values, episodes) if s is None or split[e.object_name] == s]
        n = len(ok) + (sum(unplanned.values()) if s is None else unplanned[s])
        return round(sum(ok) / n, 3) if n else None

    missing = _unplanned(objects, poses, episodes)

    def of(values, o):
        ok = [v for v, e in zip(values, episodes) if e.object_name == o]
        return round(sum(ok) / (len(ok) + missing[o]), 3) if ok or missing[o] else None

    per_object = {o: {"split": split[o], "trials": sum(e.object_name == o for e in episodes) + missing[o],
                      "policy": of(learned, o), "zero_residual": of(zero, o)} for o in objects}
    return {"heldout_success": rate(learned, "heldout"), "train_success": rate(learned, "train"),
            "policy_success": rate(learned), "zero_residual_success": rate(zero),
            "zero_residual_success_train": rate(zero, "train"), "zero_residual_success_heldout": rate(zero, "heldout"),
            "policy_trials": len(episodes) + sum(unplanned.values()), "policy_unplanned": counts["unreachable"],
            "policy_bundle": str(policy.manifest.root), "policy_timestep_s": timestep_s,
            "policy_eval_s": round(time.monotonic() - t0, 1), "policy_per_object": per_object}


def _unplanned(objects, poses, episodes) -> dict[str, int]:
    """Trials per object whose arm plan failed (placements x grasps minus the planned episodes)."""
    from dexstack.grasp.human_grasps import library

    return {o: poses * len(library(o)) - sum(e.object_name == o for e in episodes) for o in objects}


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 3) if len(values) else None


if __name__ == "__main__":
    sys.exit(main())
