"""Benchmark of the camera core: synthetic RGB-D frames through rs.software_device, rs.syncer and rs.align.

For 640x480 and 848x480 (depth and color at the same size, 1.5 cm baseline, no filters) pushes frames
back to back for ``--seconds`` each and reads every one as an aligned RGBDFrame. Prints one JSON line:
aligned_<size>_hz (push + read throughput) and process_ms_p50/p99 (time of one read() at 640x480:
syncer hand-off, alignment and copy-out to owned arrays).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dexstack.camera import CameraConfig, SoftwareCamera  # noqa: E402
from dexstack.camera_model import CameraModel  # noqa: E402
from dexstack.viz.plots import add_plot_argument, bench_plot  # noqa: E402


def run(width: int, height: int, seconds: float) -> tuple[float, list[float]]:
    """Return (frames per second, per-frame read() durations in ms)."""
    intr = CameraModel(width, height, 0.96 * width, 0.96 * width, width / 2 - 0.7, height / 2 + 1.3)
    T_color_depth = np.eye(4)
    T_color_depth[0, 3] = 0.015
    profile = f"{width}x{height}x30"
    config = CameraConfig(source="software", color_profile=profile, depth_profile=profile)
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = rng.integers(300, 3000, (height, width), dtype=np.uint16)
    read_ms: list[float] = []
    with SoftwareCamera(config, intr, intr, T_color_depth) as cam:
        cam.push(color, depth, 1_000_000_000, 0)  # the syncer's stream-discovery pair never yields a frame
        cam.read(timeout_s=0.05)
        frame_number = 1
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            cam.push(color, depth, 1_000_000_000 + frame_number * 33_333_333, frame_number)
            t0 = time.perf_counter()
            frame = cam.read(timeout_s=1.0)
            if frame is not None:
                read_ms.append((time.perf_counter() - t0) * 1e3)
            frame_number += 1
        elapsed = time.perf_counter() - start
    return len(read_ms) / elapsed, read_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each resolution's run")
    add_plot_argument(parser)
    args = parser.parse_args()
    hz_640, read_ms = run(640, 480, args.seconds)
    hz_848, read_ms_848 = run(848, 480, args.seconds)
    line = {
        "aligned_640x480_hz": round(hz_640, 1),
        "aligned_848x480_hz": round(hz_848, 1),
        "process_ms_p50": round(float(np.percentile(read_ms, 50)), 3),
        "process_ms_p99": round(float(np.percentile(read_ms, 99)), 3),
    }
    print(json.dumps(line))
    if args.plot:
        bench_plot(args.plot, "bench/camera_core.py: software device -> align -> numpy", line,
                   {"read 640x480": read_ms, "read 848x480": read_ms_848}, unit="ms per frame")


if __name__ == "__main__":
    main()
