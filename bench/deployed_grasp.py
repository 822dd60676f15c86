#!/usr/bin/env python3
"""Grasping through the launched ``sim_grasp`` graph (issue 12), trial by trial where ``bench/grasp.py`` put them.

    flock /tmp/dexstack-cpu.lock .venv/bin/python bench/deployed_grasp.py --split heldout --verify \
        --launch-arg use_sim_time:=true --launch-arg real_time_factor:=0.3

For each object of ``--split`` (or ``--objects``), each human grasp of its library and ``--poses`` placements
drawn as ``bench/grasp.py`` draws its policy's (seed ``20000 + --seed``,
:func:`dexstack.policies.grasp.bank.library_placements`): a fresh ``sim_grasp`` graph (sim_cell, grasp_target,
object_pose, safety_monitor, policy as separate processes over DDS, camera and perception on) with the object placed
there; ``grasp_target`` fits the object in the camera's frame and retargets the shown grasp (``--verify``: the
candidates checked by an open-loop grasp first, as ``bench/grasp.py`` does by default; 30-100 s per target), the
policy runs the grasp episode from home, and the trial is scored from the simulator's object pose and the joint
states as ``bench/grasp.py`` scores (rise >= 8 cm, < 2 cm slip in the hand over the 2 s hold:
:mod:`dexstack.evaluation.deployed_grasp`). Run it under the CPU lock: the graph's timing is part of the result.

Prints one JSON line: ``deployed_success`` (all trials), ``deployed_success_train`` / ``_heldout``, ``trials``,
``policy`` (the bundle), ``verify``, ``launch_args``, ``per_trial`` (object, grasp, placement, success, rise,
slip, why it failed, startup time, the gate's and the nodes' notes, ``target_vs_bench``: the graph's grasp target
against the one ``bench/grasp.py`` plans for the same grasp,
:func:`~dexstack.evaluation.deployed_grasp.target_difference`), ``targets_as_bench`` of ``targets_compared`` (within
0.1 mm, 0.1 deg, 1e-3 rad); one progress line per trial on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # before rclpy loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="fungrasp_allegro")
    parser.add_argument("--split", choices=("train", "heldout", "all"), default="heldout")
    parser.add_argument("--objects", nargs="+", default=None, help="these objects instead of --split's")
    parser.add_argument("--poses", type=int, default=2, help="placements per grasp (bench/grasp.py's --poses)")
    parser.add_argument("--seed", type=int, default=0, help="bench/grasp.py's --seed")
    parser.add_argument("--verify", action="store_true", help="grasp_target checks its retargeting candidates")
    parser.add_argument("--gt-object-pose", action="store_true",
                        help="feed the policy the simulator's object pose (the target still comes from perception)")
    parser.add_argument("--launch-arg", action="append", default=[], help="extra launch argument name:=value")
    parser.add_argument("--startup-timeout-s", type=float, default=300.0, help="until the policy's first command")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep each trial's node logs, trace.npz and grasp_target.json here")
    args = parser.parse_args(argv)
    bad = [a for a in args.launch_arg if ":=" not in a]
    if bad:
        parser.error(f"--launch-arg takes name:=value, got {bad}")
    extra = dict(a.split(":=", 1) for a in args.launch_arg)

    from dexstack.evaluation.deployed import GRASP_TARGET_TOPIC, probe_session
    from dexstack.evaluation.deployed_grasp import (
        GraspScoring,
        JointTrace,
        LatestText,
        run_grasp_trial,
        target_difference,
    )
    from dexstack.grasp.human_grasps import library
    from dexstack.grasp.target_io import target_from_dict
    from dexstack.grasp.verify import VerifiedRetargeter
    from dexstack.perception.objects import known_objects, load_object_model
    from dexstack.policies.grasp.bank import library_placements, retarget_resting
    from dexstack.retarget.functional import FunctionalRetargeter
    from dexstack.robot import load_description
    from dexstack.robot.kinematics import Kinematics

    names = args.objects or [n for n in known_objects() if library(n)
                             and (args.split == "all" or load_object_model(n).split == args.split)]
    unknown = sorted(set(names) - set(known_objects()))
    if unknown:
        parser.error(f"unknown objects {unknown}; known: {', '.join(known_objects())}")
    # bench/grasp.py draws its placements over all its objects in order: draw them all, keep ours
    every = [n for n in known_objects() if library(n)]
    trials = [t for t in library_placements(every, args.poses, 20_000 + args.seed) if t[0] in names]
    d = load_description("panda_allegro")
    kin = Kinematics(d)
    palm = d.profile.hand.palm_link

    def palm_pose(q):
        return kin.frame_pose(q, palm)

    scoring = GraspScoring()
    # the target bench/grasp.py plans for each library grasp, to compare with the one the graph sent
    retargeter = FunctionalRetargeter(description=d)
    verifier = VerifiedRetargeter() if args.verify else None
    bench_targets = {}
    rows = []
    with probe_session("deployed_grasp_probe", extra, args.log_dir) as (probe, log_root):
        joints = JointTrace(probe, d)
        target = LatestText(probe, GRASP_TARGET_TOPIC)
        for name, g, k, T in trials:
            kind = library(name)[g].kind
            yaw = float(np.arctan2(T[1, 0], T[0, 0]))
            start = f"{T[0, 3]:.6f} {T[1, 3]:.6f} {T[2, 3]:.6f} {yaw:.6f}"
            launch_args = {"object": name, "grasp": kind, "policy": args.policy, "object_start": start,
                           "verify": "true" if args.verify else "false", **extra}
            trial_dir = log_root / f"{name}_{kind}_{k}"
            result = run_grasp_trial(probe, joints, launch_args, scoring, palm_pose, trial_dir,
                                     args.startup_timeout_s, args.gt_object_pose, target)
            row = {"object": name, "split": load_object_model(name).split, "grasp": kind, "placement": k,
                   "object_start": start, **result, "target_vs_bench": None}
            if target.text is not None:  # after the graph stopped: the bench's retargeting runs on an idle machine
                sent, _ = target_from_dict(json.loads(target.text), len(d.hand_joints))
                if (name, g) not in bench_targets:
                    grasp_kp = library(name)[g].keypoints_object_m
                    bench_targets[name, g], _ = retarget_resting(load_object_model(name), grasp_kp, retargeter,
                                                                 verifier)
                row["target_vs_bench"] = target_difference(sent, bench_targets[name, g])
            rows.append(row)
            print(f"{name} {kind} #{k}: success={row['success']} rise={row['rise_m']} slip={row['slip_m']} "
                  f"{row['reason']}", file=sys.stderr, flush=True)

    def rate(split=None):
        ok = [r["success"] for r in rows if split is None or r["split"] == split]
        return round(sum(ok) / len(ok), 3) if ok else None

    compared = [r["target_vs_bench"] for r in rows if r["target_vs_bench"] is not None]
    same = sum(c["palm_mm"] < 0.1 and c["palm_deg"] < 0.1 and c["hand_rad"] < 1e-3 for c in compared)
    print(json.dumps({"deployed_success": rate(), "deployed_success_train": rate("train"),
                      "targets_as_bench": same, "targets_compared": len(compared),
                      "deployed_success_heldout": rate("heldout"), "trials": len(rows), "policy": args.policy,
                      "verify": args.verify, "gt_object_pose": args.gt_object_pose, "launch_args": extra,
                      "per_trial": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
