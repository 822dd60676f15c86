"""Record a batch of scripted human demos on the simulated cell, one launch graph per demo (seeded).

    dexstack-record-demos --kinds lift push --seeds 0-3 --out recordings/demos

For each (kind, seed) it runs ``dexstack-launch sim_human_demo demo:=<kind> seed:=<seed> ...`` (the real nodes:
sim cell, scripted human hand, hand_pose, object_pose, recorder), waits for the episode to be saved ("demo done")
and stops the graph. The cube starts where the seed puts it (``object_start``). Prints one JSON line per demo
(episode directory, kind, seed, wall time). See docs/demos.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def record_one(kind: str, seed: int, out: Path, pace: float, timeout_s: float, log_dir: Path) -> dict:
    from dexstack.demos.human import CUBE_HALF_M, sample_demo  # noqa: PLC0415

    spec = sample_demo(kind, seed)
    x, y = spec.object_xy_m
    before = {p.name for p in out.glob("episode_*")}
    cmd = [sys.executable, "-m", "dexstack.launch.runner", "sim_human_demo", f"demo:={kind}", f"seed:={seed}",
           f"pace:={pace}", f"output_dir:={out}", f"object_start:={x:.4f} {y:.4f} {CUBE_HALF_M} "
           f"{spec.object_yaw_rad:.4f}"]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{kind}_s{seed}.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        ok = False
        try:
            while time.monotonic() - start < timeout_s and proc.poll() is None:
                time.sleep(0.5)
                if "demo done" in log_path.read_text(errors="replace"):
                    ok = True
                    break
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    new = sorted(p for p in out.glob("episode_*") if p.name not in before)
    return {"kind": kind, "seed": seed, "ok": ok and bool(new), "episode": str(new[-1]) if new else "",
            "wall_s": round(time.monotonic() - start, 1), "log": str(log_path),
            "object_xy_m": [round(v, 4) for v in spec.object_xy_m],
            "approach_yaw_deg": round(math.degrees(spec.approach_yaw_rad), 1)}


def main(argv: list[str] | None = None) -> int:
    from dexstack.demos.human import KINDS  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="dexstack-record-demos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seeds", default="0", help="e.g. 0-3,7")
    parser.add_argument("--out", default="recordings/demos", help="episode folder")
    parser.add_argument("--pace", type=float, default=0.5, help="demo speed factor (0.25-2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per demo before giving up")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError:
        print(f"dexstack-record-demos: bad --seeds '{args.seeds}' (e.g. 0-3,7)", file=sys.stderr)
        return 2
    if not 0.25 <= args.pace <= 2.0:
        print(f"dexstack-record-demos: --pace {args.pace} outside [0.25, 2]", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for seed in seeds:
        for kind in args.kinds:
            result = record_one(kind, seed, out, args.pace, args.timeout, out / "logs")
            failed += not result["ok"]
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
