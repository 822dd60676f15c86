"""In-process tracking scores of a bundle on one reference set, two ways, simulator object pose:

- ``evaluate``: :func:`dexstack.policies.tracking.env.evaluate` (the policy's targets straight to the cell's drivers,
  1 ms physics): the ``inprocess_success`` of ``bench/deployed_policy.py``;
- ``ticked``: :func:`dexstack.evaluation.ticked.run_ticked`, the deployed command loop (the pure safety gate of
  ``config/safety.yaml`` at 100 Hz with the measured state every tick, the drivers' command semantics) in one process.

    .venv/bin/python bench/tracking_inprocess.py --bundle track_cube --set heldout
    .venv/bin/python bench/tracking_inprocess.py --bundle /tmp/ft --set validation --validation-references 12

``--set validation`` uses the trainer's selection references (``references.validation_specs``): compare candidates
there; ``heldout`` (policies/references/heldout_*) is for reporting only. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="track_cube")
    parser.add_argument("--set", choices=("heldout", "validation", "trained"), default="heldout")
    parser.add_argument("--validation-references", type=int, default=12)
    parser.add_argument("--modes", nargs="+", default=["evaluate", "ticked"], choices=["evaluate", "ticked"])
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from dexstack.evaluation.ticked import run_ticked
    from dexstack.policies import list_references, load_policy, load_reference, reference_path
    from dexstack.policies.tracking.env import evaluate
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.policies.tracking.references import cached_reference, validation_specs
    from dexstack.robot import load_description

    torch.set_num_threads(1)
    description = load_description("panda_allegro")
    if args.set == "validation":
        refs = [cached_reference(s, description) for s in validation_specs(args.validation_references)]
    else:
        names = sorted(n for n in list_references() if n.startswith("heldout_") == (args.set == "heldout"))
        refs = [load_reference(reference_path(n), description) for n in names]
    backend = CellBackend()
    per_ref: dict[str, dict] = {r.name: {} for r in refs}
    scores: dict[str, list[bool]] = {m: [] for m in args.modes}
    t0 = time.monotonic()
    for ref in refs:
        if "evaluate" in args.modes:
            r = evaluate(load_policy(args.bundle, description, reference=ref), [ref], backend, description)[0]
            scores["evaluate"].append(bool(r.success))
            per_ref[ref.name]["evaluate"] = {"success": bool(r.success), "max_m": round(r.max_position_error_m, 4),
                                             "final_m": round(r.final_position_error_m, 4),
                                             "final_rad": round(r.final_rotation_error_rad, 3)}
        if "ticked" in args.modes:
            tr = run_ticked(load_policy(args.bundle, description, reference=ref), ref, backend)
            scores["ticked"].append(bool(tr.success))
            per_ref[ref.name]["ticked"] = {"success": bool(tr.success), "max_m": round(tr.max_position_error_m, 4),
                                           "final_m": round(tr.final_position_error_m, 4),
                                           "final_rad": round(tr.final_rotation_error_rad, 3)}
        print(ref.name, per_ref[ref.name], file=sys.stderr, flush=True)
    out = {"bundle": args.bundle, "set": args.set, "n_references": len(refs),
           **{f"{m}_success": round(float(np.mean(v)), 3) for m, v in scores.items()},
           "wall_s": round(time.monotonic() - t0, 1), "load": os.getloadavg()[0], "per_reference": per_ref}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
