"""Object pose through the hand's occlusion, replayed in-process (no ROS): where perception loses the object and
how wrong what it publishes is, against the simulator's ground truth.

A policy bundle runs on references in-process (MuJoCo cell, :class:`~dexstack.policies.runtime.PolicyRuntime` as
the policy node runs it); the cell's camera renders RGB-D at ``--camera-hz`` and the object pose node's core
(:class:`~dexstack.perception.object_pose.ObjectPoseEstimator` + :class:`~dexstack.perception.pose_keeper.
PoseKeeper`, the palm from the joint state) runs on every frame exactly as ``object_pose`` does. With ``--feed
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
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.rosenv import force_localhost_dds  # noqa: E402

force_localhost_dds()  # the network rule, although nothing here loads rclpy
os.environ.setdefault("MUJOCO_GL", "egl")


def _stats(values) -> dict:
    import numpy as np

    if not values:
        return {"n": 0}
    v = np.asarray(values, dtype=float)
    return {"n": int(len(v)), "median": round(float(np.median(v)), 2), "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2)}


def _reason_key(reason: str) -> str:
    """The first attempt's reason without its numbers (for counting)."""
    import re

    first = reason.split(";")[0].strip()
    return re.sub(r"[-0-9.]+", "#", first)


def run_reference(bundle: str, ref, description, backend, cell, camera, feed: str, camera_hz: float,
                  wrong_mm: float, frames_out: list | None, self_filter: bool = True,
                  config_overrides: dict | None = None) -> dict:
    import numpy as np

    from dexstack.perception.geometry import pose_error
    from dexstack.perception.object_pose import ObjectPoseConfig, ObjectPoseEstimator, Occluders
    from dexstack.perception.objects import load_object_model
    from dexstack.perception.pose_keeper import PoseKeeper
    from dexstack.policies import load_policy
    from dexstack.policies.tracking.env import run_episode
    from dexstack.robot.kinematics import Kinematics
    from dexstack.safety.collision import CollisionModel
    from dexstack.transforms import matrix_to_quat_xyzw, pose_to_transform

    model = load_object_model(cell.cell.object.name)
    cal = cell.calibration
    estimator = ObjectPoseEstimator(model, cal.T_parent_camera, ObjectPoseConfig(**(config_overrides or {})),
                                    cal.depth_scale_m)
    keeper = PoseKeeper()
    kin = Kinematics(description)
    robot = CollisionModel(description) if self_filter else None
    palm_link = description.profile.hand.palm_link
    syms = model.symmetries()

    policy = load_policy(bundle, description, reference=ref)
    frame_period = 1.0 / camera_hz
    perceived = None  # (7,) the last pose the node would have published
    next_frame = 0.0
    n_frames = n_fresh = n_published = n_wrong = 0
    lost = Counter()
    err_fresh, err_fresh_deg, err_kept, err_kept_deg = [], [], [], []

    def perceive(now: float, q: np.ndarray, dq: np.ndarray, obj: np.ndarray) -> np.ndarray:
        """The camera frames due by ``now`` through the node's estimator + pose keeper; the pose the policy sees."""
        nonlocal perceived, next_frame, n_frames, n_fresh, n_published, n_wrong
        while next_frame <= now + 1e-9:
            cell.data.qpos[:] = backend.data.qpos
            cell.data.time = backend.data.time
            image = camera.render()
            T_true = pose_to_transform(obj[:3], obj[3:])
            T_palm = kin.frame_pose(q, palm_link)
            prediction = keeper.predict(next_frame, T_palm)
            occluders = None if robot is None else Occluders(*robot.capsules_base(q, hand_only=True))
            result = estimator.estimate(image.color_rgb8, image.depth_mm, cal.intrinsics, next_frame,
                                        None if prediction is None else prediction.T_base_object, occluders)
            n_frames += 1
            T_pub, kind = None, "lost"
            if result.tracking:
                keeper.measured(next_frame, result.T_base_object, result.covariance_base, T_palm)
                T_pub, kind = result.T_base_object, "fresh"
                n_fresh += 1
                mm, deg = pose_error(T_pub, T_true, syms)
                err_fresh.append(mm)
                err_fresh_deg.append(deg)
                n_wrong += mm > wrong_mm
            else:
                lost[f"{result.lost_kind}: {_reason_key(result.reason)}"] += 1
                if prediction is not None:
                    T_pub, kind = prediction.T_base_object, f"kept ({prediction.mode})"
                    mm, deg = pose_error(T_pub, T_true, syms)
                    err_kept.append(mm)
                    err_kept_deg.append(deg)
            if T_pub is not None:
                n_published += 1
                perceived = np.concatenate([T_pub[:3, 3], matrix_to_quat_xyzw(T_pub[:3, :3])])
            if frames_out is not None:
                frames_out.append({"reference": ref.name, "t_s": round(next_frame, 3), "kind": kind,
                                   "init": result.init, "reason": result.reason[:160],
                                   "err_mm": None if T_pub is None else round(pose_error(T_pub, T_true, syms)[0], 1),
                                   "palm_obj_mm": round(1000 * float(np.linalg.norm(T_palm[:3, 3] - obj[:3])), 1)})
            next_frame += frame_period
        return obj if feed == "gt" or perceived is None else perceived

    task = run_episode(policy, ref, backend, description, perceive=perceive)
    return {"success": bool(task.success()), "max_position_error_m": round(float(task.max_pos_err), 4),
            "frames": n_frames, "fresh_fraction": round(n_fresh / max(n_frames, 1), 3),
            "published_fraction": round(n_published / max(n_frames, 1), 3),
            "wrong_fresh_frames": n_wrong, "fresh_err_mm": _stats(err_fresh), "fresh_err_deg": _stats(err_fresh_deg),
            "kept_err_mm": _stats(err_kept), "kept_err_deg": _stats(err_kept_deg),
            "lost_kinds": dict(lost.most_common(8)),
            "_errors": (err_fresh, err_kept, n_frames, n_fresh, n_published, n_wrong)}


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

    from dexstack.policies.bundles import reference_path
    from dexstack.policies.reference import load_reference
    from dexstack.policies.tracking.physics import CellBackend
    from dexstack.robot.description import load_description
    from dexstack.sim import SimCell
    from dexstack.sim.camera import SimCamera

    torch.set_num_threads(1)
    description = load_description("panda_allegro")
    backend = CellBackend()
    cell = SimCell()
    if cell.model.nq != backend.model.nq:
        raise SystemExit("the rendering cell and the physics cell differ")
    camera = SimCamera(cell)
    frames = [] if args.frames_jsonl is not None else None
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        overrides[name] = int(value) if value.lstrip("-").isdigit() else float(value)
    per_ref, all_fresh, all_kept, totals = {}, [], [], [0, 0, 0, 0]
    successes = []
    try:
        for name in args.references:
            ref = load_reference(reference_path(name), description)
            r = run_reference(args.bundle, ref, description, backend, cell, camera, args.feed, args.camera_hz,
                              args.wrong_mm, frames, not args.no_self_filter, overrides)
            ef, ek, n, nf, npub, nw = r.pop("_errors")
            all_fresh += ef
            all_kept += ek
            totals = [totals[0] + n, totals[1] + nf, totals[2] + npub, totals[3] + nw]
            successes.append(r["success"])
            per_ref[name] = r
            print(f"{name}: {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        camera.close()
    if frames is not None:
        args.frames_jsonl.write_text("".join(json.dumps(f) + "\n" for f in frames))
    n, nf, npub, nw = totals
    print(json.dumps({"bundle": args.bundle, "feed": args.feed, "camera_hz": args.camera_hz,
                      "self_filter": not args.no_self_filter, "config_overrides": overrides,
                      "success": round(sum(successes) / len(successes), 3), "fresh_fraction": round(nf / max(n, 1), 3),
                      "published_fraction": round(npub / max(n, 1), 3), "wrong_fresh_frames": nw,
                      "fresh_err_mm": _stats(all_fresh), "kept_err_mm": _stats(all_kept), "per_reference": per_ref}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
