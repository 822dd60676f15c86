"""Deployed-path benchmark: a policy bundle in-process (``tracking.env.evaluate``) vs through the launched graph.

    .venv/bin/python bench/deployed_policy.py --bundle track_cube --references lift push heldout_lift_high \
        heldout_push_diag

For each reference: the in-process evaluation (perfect timing, simulator object pose); the deployed graph of
``launch/sim_policy.launch.xml`` (sim_cell, safety_monitor, object_pose, policy as separate processes over DDS,
camera and perception on), object pose from perception; and the same graph with the policy fed the simulator's
object pose (a remap). Scored from ``/dexstack/sim/object_pose_gt`` with the in-process metric (4 cm along the way,
3 cm / 0.4 rad at the end) on the reference's timeline from the policy's first command. Run it under the CPU lock
(``flock /tmp/dexstack-cpu.lock ...``): it measures timing.

Prints one JSON line: inprocess_success, deployed_success, deployed_gt_pose_success, n_references,
sim_realtime_factor (physics s / wall s, worst episode), policy_period_ms_p99 (worst episode, command arrivals),
object_pose_coverage (fraction of control steps with a fresh perceived pose, perception runs), held_after_end
(fraction of episodes whose object stays within 3 cm of the reference's end pose for 5 s after it), and
per_reference results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # before rclpy loads
os.environ.setdefault("MUJOCO_GL", "egl")

DEFAULT_REFERENCES = ("lift", "push", "heldout_lift_high", "heldout_push_diag")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="track_cube")
    parser.add_argument("--references", nargs="+", default=list(DEFAULT_REFERENCES))
    parser.add_argument("--modes", nargs="+", default=["inprocess", "perception", "gt"],
                        choices=["inprocess", "perception", "gt"])
    parser.add_argument("--hold-s", type=float, default=5.0, help="observed after each reference's end")
    parser.add_argument("--no-place-object", action="store_true", help="leave the cube where the cell config puts it")
    parser.add_argument("--launch-arg", action="append", default=[], help="extra launch argument name:=value")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep node logs here")
    args = parser.parse_args(argv)
    launch_args = dict(a.split(":=", 1) for a in args.launch_arg)

    import torch

    from dexstack.evaluation.deployed import DeployedOptions, run_deployed
    from dexstack.evaluation.scoring import ScoringConfig, summarize
    from dexstack.policies import load_policy
    from dexstack.policies.bundles import load_bundle_manifest, reference_path
    from dexstack.policies.reference import load_reference
    from dexstack.policies.tracking.env import evaluate
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.robot.description import load_description

    torch.set_num_threads(1)
    description = load_description("panda_allegro")
    manifest = load_bundle_manifest(args.bundle)
    refs = [load_reference(reference_path(name), description) for name in args.references]
    per_ref: dict[str, dict] = {r.name: {} for r in refs}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    inprocess = []
    if "inprocess" in args.modes:
        backend = CellBackend()
        for ref in refs:
            policy = load_policy(args.bundle, description, reference=ref)
            result = evaluate(policy, [ref], backend, description)[0]
            inprocess.append(result.success)
            per_ref[ref.name]["inprocess"] = {"success": result.success,
                                              "max_position_error_m": round(result.max_position_error_m, 4),
                                              "final_position_error_m": round(result.final_position_error_m, 4)}
            log(f"in-process {ref.name}: {result}")
    scoring = ScoringConfig(control_period_s=manifest.period_s, hold_s=args.hold_s)
    deployed, deployed_gt = [], []
    for mode, out in (("perception", deployed), ("gt", deployed_gt)):
        if mode not in args.modes:
            continue
        options = DeployedOptions(gt_object_pose=mode == "gt", place_object=not args.no_place_object,
                                  launch_args=launch_args, scoring=scoring,
                                  log_dir=None if args.log_dir is None else args.log_dir / mode)
        out.extend(run_deployed(args.bundle, refs, options, progress=log))
        for result in out:
            per_ref[result.reference][f"deployed_{mode}"] = result.as_dict()
    summary = summarize(inprocess, deployed, deployed_gt)
    summary.update({"bundle": args.bundle, "references": [r.name for r in refs],
                    "object_placed": not args.no_place_object, "launch_args": launch_args, "per_reference": per_ref})
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
