"""Object pose through the hand's occlusion, replayed in-process (no ROS): where perception loses the object and
how wrong what it publishes is, against the simulator's ground truth.

A policy bundle runs on references in-process (MuJoCo cell, :class:`~dexstack.policies.runtime.PolicyRuntime` as
the policy node runs it); the cell's camera renders RGB-D at ``--camera-hz`` and the object pose node's core
(:class:`~dexstack.perception.object_pose.ObjectPoseEstimator` + :class:`~dexstack.perception.pose_keeper.
PoseKeeper`, the palm from the joint state) runs on every frame exactly as ``object_pose`` does (the shared
:class:`~dexstack.evaluation.perception_feed.PerceptionFeed`, also used by ``bench/demo_tracking.py``). With ``--feed
perception`` the policy is fed what the node would publish (measured or kept pose, the last one held between
frames: the deployed loop without DDS or timing), else the simulator's pose (the frames are then those of the
in-process trajectory).

Prints one JSON line: per reference and overall ``fresh_fraction`` (frames with a measured pose: the deployed
bench's ``object_pose_coverage`` counts the same), ``published_fraction`` (measured or kept), ``lost_kinds``
(why frames were not measured: the first reason tried, grouped), the error (mm / deg vs ground truth) of measured
and of kept poses (median / p95 / max), ``wrong_fresh_frames`` (measured poses more than ``--wrong-mm`` off:
wrong poses published as measurements) and, with ``--feed perception``, the tracking success of the episode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # the network rule, although nothing here loads rclpy
os.environ.setdefault("MUJOCO_GL", "egl")


def run_reference(bundle: str, ref, description, backend, feed, use: str, frames_out: list | None) -> dict:
    """One episode of ``bundle`` on ``ref`` with the perception ``feed`` running on every camera frame; the policy
    sees its pose (``use == "perception"``) or the simulator's (``"gt"``)."""
    import numpy as np

    from dexstack.policies import load_policy
    from dexstack.policies.tracking.env import run_episode

    policy = load_policy(bundle, description, reference=ref)
    feed.reset()

    def perceive(now: float, q: np.ndarray, dq: np.ndarray, obj: np.ndarray) -> np.ndarray:
        seen = feed(now, q, dq, obj)
        return obj if use == "gt" else seen

    task = run_episode(policy, ref, backend, description, perceive=perceive)
    if frames_out is not None:
        for f in feed.frames:
            frames_out.append({"reference": ref.name, "t_s": round(f.t_s, 3), "kind": f.kind, "init": f.init,
                               "reason": f.reason[:160], "err_mm": None if f.err_mm is None else round(f.err_mm, 1),
                               "palm_obj_mm": round(1000 * float(np.linalg.norm(f.T_palm[:3, 3] - f.T_true[:3, 3])),
                                                    1)})
    s = feed.summary()
    s.pop("truth_fed_fraction")
    fresh_mm, _, kept_mm, _ = feed.errors()
    n = len(feed.frames)
    n_published = sum(f.T_published is not None for f in feed.frames)
    totals = (fresh_mm, kept_mm, n, len(fresh_mm), n_published, s["wrong_fresh_frames"])
    return {"success": bool(task.success()), "max_position_error_m": round(float(task.max_pos_err), 4), **s,
            "_errors": totals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="track_cube")
    parser.add_argument("--references", nargs="+", default=["lift", "heldout_lift_high"])
    parser.add_argument("--feed", choices=("gt", "perception"), default="perception",
                        help="what the policy is fed: the simulator's object pose or the node's")
    parser.add_argument("--camera-hz", type=float, default=15.0)
    parser.add_argument("--wrong-mm", type=float, default=15.0, help="a measured pose this far off is wrong")
    parser.add_argument("--no-self-filter", action="store_true",
                        help="do not pass the hand's capsules to the estimator (the node's robot_self_filter off)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override an ObjectPoseConfig field (numbers), e.g. --set min_agree_points=40")
    parser.add_argument("--frames-jsonl", type=Path, default=None, help="write one line per frame here")
    args = parser.parse_args()

    import torch

    from dexstack.evaluation.perception_feed import PerceptionFeed, stats
    from dexstack.policies.bundles import reference_path
    from dexstack.policies.reference import load_reference
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.robot.description import load_description

    torch.set_num_threads(1)
    description = load_description("panda_allegro")
    backend = CellBackend()
    frames = [] if args.frames_jsonl is not None else None
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = int(value) if value.lstrip("-").isdigit() else float(value)
    feed = PerceptionFeed(description, camera_hz=args.camera_hz, self_filter=not args.no_self_filter,
                          config_overrides=overrides, wrong_mm=args.wrong_mm)
    if feed.cell.model.nq != backend.model.nq:
        raise SystemExit("the rendering cell and the physics cell differ")
    per_ref, all_fresh, all_kept, totals = {}, [], [], [0, 0, 0, 0]
    successes = []
    try:
        for name in args.references:
            ref = load_reference(reference_path(name), description)
            r = run_reference(args.bundle, ref, description, backend, feed, args.feed, frames)
            ef, ek, n, nf, npub, nw = r.pop("_errors")
            all_fresh += ef
            all_kept += ek
            totals = [totals[0] + n, totals[1] + nf, totals[2] + npub, totals[3] + nw]
            successes.append(r["success"])
            per_ref[name] = r
            print(f"{name}: {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        feed.close()
    if frames is not None:
        args.frames_jsonl.write_text("".join(json.dumps(f) + "\n" for f in frames))
    n, nf, npub, nw = totals
    print(json.dumps({"bundle": args.bundle, "feed": args.feed, "camera_hz": args.camera_hz,
                      "self_filter": not args.no_self_filter, "config_overrides": overrides,
                      "success": round(sum(successes) / len(successes), 3), "fresh_fraction": round(nf / max(n, 1), 3),
                      "published_fraction": round(npub / max(n, 1), 3), "wrong_fresh_frames": nw,
                      "fresh_err_mm": stats(all_fresh), "kept_err_mm": stats(all_kept), "per_reference": per_ref}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
