"""From held-out human demos to tracking: convert each demo (dexstack-demo2ref's core), then track the reference with
a bundle trained on other demos and replay it open-loop (Human2Sim2Robot's object-aware replay baseline).

    .venv/bin/python bench/demo_tracking.py --episodes recordings/demos_heldout --bundle policies/track_demos
    .venv/bin/python bench/demo_tracking.py --references policies/references/demos/heldout \
        --bundle policies/track_demos --compare track_cube

``--references``: already converted held-out references (the shipped ones: no recording needed; ``demo2ref_s``
is then their recorded conversion time). ``--compare``: other bundles tracked on the same demos (e.g. the designed
``track_cube`` zero-shot), reported per demo and as ``compare``.

Held-out demos: recorded with seeds never used for training or validation (docs/demos.md lists the split). Each
demo is converted (timed: ``demo2ref_s``, mean per converted demo), refused ones are counted with their reasons.
Evaluation is IN-PROCESS (``tracking.env``'s loop through the policy runtime and the gated sim cell, from the
robot's home pose, the object at the reference's start): the deployed graph (perception on) does not fit this
machine's time budget for 8+ demos; see docs/demos.md. ``--object-pose perception`` (default): the tracking
bundles see the object pose node's output, computed in-process on the cell's simulated camera at
``--camera-hz`` (:class:`~dexstack.evaluation.perception_feed.PerceptionFeed`: estimator + pose keeper with the
hand's self-filter, the last published pose held between frames; each episode's ``perception`` figures: fresh /
published fractions, error vs the simulator in mm); ``--object-pose sim``: the simulator's pose (perfect
perception). Open-loop replay never reads the object pose (``ReplayPolicy.act`` plays the reference), so it runs
without the feed either way.
Success: the object stays within 4 cm of its reference all along and ends within 3 cm / 0.4 rad (the existing
metric); ``object_err_cm_mean``: mean per-frame object position error (from the end of the approach).

Prints one JSON line: demo_tracking_success, demo_replay_success, n_heldout_demos, refused_demos,
object_err_cm_mean, replay_object_err_cm_mean, demo2ref_s, per_demo (episode, seed/kind, reason or results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def track(policy, ref, description, gate: str = "limits", timestep_s: float = 0.001, feed=None) -> dict:
    """One episode of ``policy`` on ``ref`` in-process (as ``tracking.env.evaluate``), with per-frame errors;
    ``feed``: a :class:`~dexstack.evaluation.perception_feed.PerceptionFeed` giving the policy its object pose
    (None: the simulator's)."""
    from dexstack.policies.tracking.env import run_episode  # noqa: PLC0415
    from dexstack.policies.tracking.gated_cell import GatedCell  # noqa: PLC0415

    backend = GatedCell(policy.manifest.period_s, gate=gate, timestep_s=timestep_s)
    approach_s = float((ref.metadata or {}).get("approach_s", 0.0))
    errors = []

    def object_error(now: float, obj: np.ndarray) -> None:
        if now >= approach_s:
            errors.append(float(np.linalg.norm(obj[:3] - ref.object_pose_at(now)[:3])))

    if feed is not None:
        feed.reset()
    task = run_episode(policy, ref, backend, description, on_step=object_error, perceive=feed)
    if hasattr(backend, "close"):
        backend.close()
    out = {"success": bool(task.success()), "max_err_cm": round(100 * task.max_pos_err, 2),
           "final_err_cm": round(100 * task.last_pos_err, 2),
           "final_rot_err_rad": round(float(task.last_rot_err), 3),
           "object_err_cm_mean": round(100 * float(np.mean(errors)), 2) if errors else None}
    if feed is not None:
        out["perception"] = feed.summary()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--episodes", nargs="+", help="held-out episode directories or folders")
    source.add_argument("--references", nargs="+", help="converted held-out references (.npz files or folders)")
    parser.add_argument("--bundle", required=True, help="tracking bundle trained on other demos")
    parser.add_argument("--compare", nargs="*", default=[], help="other bundles tracked on the same demos")
    parser.add_argument("--max-gap", type=float, default=None, help="conversion: longest bridged object gap (s)")
    parser.add_argument("--grasp", choices=("robot_top", "human"), default="robot_top", help="conversion: hold")
    parser.add_argument("--gate", default="limits", choices=("full", "limits", "off"))
    parser.add_argument("--profile", default="panda_allegro")
    parser.add_argument("--object-pose", choices=("perception", "sim"), default="perception",
                        help="what the tracking bundles see: the in-process perception feed or the simulator's pose")
    parser.add_argument("--camera-hz", type=float, default=15.0, help="perception: camera frame rate")
    args = parser.parse_args(argv)

    from dexstack.cli.demo2ref import _kind  # noqa: PLC0415
    from dexstack.demos.episode import DemoError, read_demo  # noqa: PLC0415
    from dexstack.demos.to_reference import ConvertConfig, convert  # noqa: PLC0415
    from dexstack.policies import load_policy  # noqa: PLC0415
    from dexstack.policies.reference import load_reference  # noqa: PLC0415
    from dexstack.policies.tracking.gated_cell import GatedCell  # noqa: PLC0415
    from dexstack.robot import load_description  # noqa: PLC0415

    description = load_description(args.profile)
    base = ConvertConfig(grasp=args.grasp)
    if args.max_gap is not None:
        base = replace(base, max_gap_s=args.max_gap)
    items: list[Path] = []
    for item in map(Path, args.episodes or args.references):
        if args.references:
            items += sorted(item.glob("*.npz")) if item.is_dir() else [item]
        else:
            items += [item] if list(item.glob("*.mcap")) else sorted(p for p in item.glob("episode_*") if p.is_dir())
    tracker = load_policy(args.bundle, description)
    replayer = load_policy("replay", description)
    others = {name: load_policy(name, description) for name in args.compare}
    feed = None
    if args.object_pose == "perception":
        from dexstack.evaluation.perception_feed import PerceptionFeed  # noqa: PLC0415

        feed = PerceptionFeed(description, camera_hz=args.camera_hz)
        probe = GatedCell(tracker.manifest.period_s, gate=args.gate)
        if probe.batch.models[0].nq != feed.cell.model.nq:
            raise SystemExit("the rendering cell and the physics cell differ")
    per_demo, convert_s = [], []
    for item in items:
        start = time.monotonic()
        row = {"episode": str(item)}
        if args.references:
            ref = load_reference(item, description)
            meta = ref.metadata or {}
            row.update(episode=meta.get("episode", str(item)), reference=str(item), task=meta.get("task", ""))
            if "convert_s" in meta:
                convert_s.append(float(meta["convert_s"]))
        else:
            try:
                tracks = read_demo(item)
                row["task"] = tracks.info.get("task", "")
                kind = _kind(row["task"])
                result = convert(tracks, description, replace(base, kind=kind))
                convert_s.append(time.monotonic() - start)
            except DemoError as exc:
                row.update(refused=str(exc))
                per_demo.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                continue
            ref = replace(result.reference, name=item.name, metadata=result.metadata)
        row["tracking"] = track(tracker, ref, description, args.gate, feed=feed)
        row["replay"] = track(replayer, ref, description, args.gate)  # open loop: no object pose read
        for name, policy in others.items():
            row[name] = track(policy, ref, description, args.gate, feed=feed)
        per_demo.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if feed is not None:
        feed.close()
    done = [r for r in per_demo if "tracking" in r]

    def rate(key):
        return round(float(np.mean([r[key]["success"] for r in done])), 3) if done else 0.0

    def err(key):
        vals = [r[key]["object_err_cm_mean"] for r in done if r[key]["object_err_cm_mean"] is not None]
        return round(float(np.mean(vals)), 2) if vals else None

    def seen(key):
        """Mean perception figures over the episodes of ``key`` (None without the feed)."""
        rows = [r[key]["perception"] for r in done if "perception" in r[key]]
        if not rows:
            return None
        medians = [p["fresh_err_mm"]["median"] for p in rows if p["fresh_err_mm"]["n"]]
        return {"fresh_fraction_mean": round(float(np.mean([p["fresh_fraction"] for p in rows])), 3),
                "published_fraction_mean": round(float(np.mean([p["published_fraction"] for p in rows])), 3),
                "fresh_err_mm_median_of_medians": round(float(np.median(medians)), 2) if medians else None,
                "wrong_fresh_frames": int(sum(p["wrong_fresh_frames"] for p in rows))}

    out = {"demo_tracking_success": rate("tracking"), "demo_replay_success": rate("replay"),
           "n_heldout_demos": len(per_demo), "n_converted": len(done),
           "refused_demos": len(per_demo) - len(done), "object_err_cm_mean": err("tracking"),
           "replay_object_err_cm_mean": err("replay"),
           "demo2ref_s": round(float(np.mean(convert_s)), 3) if convert_s else None,
           "compare": {name: {"success": rate(name), "object_err_cm_mean": err(name), "perception": seen(name)}
                       for name in others},
           "perception": seen("tracking"),
           "bundle": str(args.bundle), "object_pose": args.object_pose,
           "evaluation": (f"in-process (object pose from perception, simulated camera {args.camera_hz:g} Hz)"
                          if feed is not None else "in-process (simulator object pose)") + ", gate " + args.gate,
           "per_demo": per_demo}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
