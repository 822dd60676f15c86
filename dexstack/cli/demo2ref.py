"""Convert recorded human demos into robot tracking references (Human2Sim2Robot-style).

    dexstack-demo2ref recordings/episode_000012 -o refs/

Each episode's perceived object poses and hand keypoints become a ``ReferenceTrajectory`` (``refs/<name>.npz``,
provenance in its metadata: episode, onset/end times, occlusion bias, IK and clearance figures). Unusable demos are
refused with the reason and nothing is written for them. Exit status: 0 if every demo converted, 1 if some were
refused, 2 on bad arguments. ``--json`` prints one JSON line per demo. See docs/demos.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dexstack-demo2ref", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("episodes", nargs="+", help="episode directories (or a folder of them)")
    parser.add_argument("-o", "--out", default="refs", help="output folder of the .npz references")
    parser.add_argument("--profile", default="panda_allegro", help="robot profile")
    parser.add_argument("--max-gap", type=float, default=None, help="longest bridged object gap (s)")
    parser.add_argument("--grasp", choices=("robot_top", "human"), default="robot_top",
                        help="the robot's hold: its own top grasp (default) or the human's, re-expressed")
    parser.add_argument("--json", action="store_true", help="one JSON line per demo")
    args = parser.parse_args(argv)

    from dexstack.demos.episode import DemoError, read_demo  # noqa: PLC0415
    from dexstack.demos.to_reference import ConvertConfig, convert  # noqa: PLC0415
    from dexstack.policies.reference import save_reference  # noqa: PLC0415
    from dexstack.robot.description import load_description  # noqa: PLC0415

    try:
        description = load_description(args.profile)
        base = ConvertConfig(grasp=args.grasp)
        if args.max_gap is not None:
            base = replace(base, max_gap_s=args.max_gap)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dexstack-demo2ref: {exc}", file=sys.stderr)
        return 2
    dirs: list[Path] = []
    for item in map(Path, args.episodes):
        if not item.exists():
            print(f"dexstack-demo2ref: {item} does not exist", file=sys.stderr)
            return 2
        dirs += sorted(p for p in item.glob("episode_*") if p.is_dir()) if not list(item.glob("*.mcap")) else [item]
    refused = 0
    for directory in dirs:
        start = time.monotonic()
        try:
            tracks = read_demo(directory)
            kind = _kind(tracks.info.get("task", ""))
            result = convert(tracks, description, replace(base, kind=kind))
            name = _name(kind, tracks.info.get("task", ""), directory.name)
            ref = replace(result.reference, name=name, metadata=result.metadata)
            path = save_reference(ref, description.joints, Path(args.out) / f"{name}.npz")
            line = {"episode": str(directory), "ok": True, "reference": str(path), "kind": kind,
                    "duration_s": round(ref.duration_s, 2), "onset_s": result.metadata["onset_s"],
                    "demo2ref_s": round(time.monotonic() - start, 3)}
        except DemoError as exc:
            refused += 1
            line = {"episode": str(directory), "ok": False, "reason": str(exc),
                    "demo2ref_s": round(time.monotonic() - start, 3)}
        if args.json:
            print(json.dumps(line), flush=True)
        elif line["ok"]:
            print(f"{directory}: -> {line['reference']} ({line['kind']}, {line['duration_s']} s, onset at "
                  f"{line['onset_s']} s)", flush=True)
        else:
            print(f"{directory}: refused: {line['reason']}", flush=True)
    return 1 if refused else 0


def _name(kind: str, task: str, episode: str) -> str:
    """demo_<kind>_s<seed> for a scripted demo ('... (seed 3)'), else demo_<kind>_<episode directory>."""
    import re  # noqa: PLC0415

    seed = re.search(r"seed (\d+)", task)
    return f"demo_{kind or 'demo'}_" + (f"s{seed.group(1)}" if seed else episode)


def _kind(task: str) -> str:
    """The demo kind from the recorder's task text ('human demo: lift (seed 3)')."""
    from dexstack.demos.human import KINDS  # noqa: PLC0415

    words = task.replace(":", " ").replace("(", " ").split()
    return next((w for w in words if w in KINDS), "")


if __name__ == "__main__":
    raise SystemExit(main())
