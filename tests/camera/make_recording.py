"""Make a librealsense recording and the camera core's own reading of it, in a process of its own.

librealsense and Fast DDS in ONE process crash at exit (heap corruption in an exit handler, seen with pyrealsense2
2.59 + the Kilted wheels once a DDS participant exists), so tests that talk ROS get their recordings from here:
``python -m tests.camera.make_recording OUT_DIR`` writes ``recording.db3`` and ``core_frames.npz``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from dexstack.camera import CameraConfig, PlaybackEnded
from dexstack.camera_model import CameraModel
from tests.camera.synthetic import DEPTH_848, FRAME_PERIOD_NS, color_image, software_config, stamp_ns

N_FRAMES = 24
COLOR = CameraModel(640, 480, 615.3, 615.1, 318.2, 241.7, "plumb_bob", (0.11, -0.05, 0.001, -0.002, 0.013))


def plane_mm(n: int) -> int:
    """Frame n sees a fronto-parallel plane at its own depth, so a depth image paired with the wrong color shows."""
    return 1000 + 10 * n


def record(path: Path) -> None:
    """24 frames at 30 Hz, pushed in real time (playback is paced by the recording's own timing)."""
    T = np.eye(4)
    T[0, 3] = 0.015  # a D435-like baseline: alignment really reprojects
    from dexstack.camera import SoftwareCamera  # librealsense only in the process that makes the recording

    config = software_config(depth_profile="848x480x30", record_path=str(path))
    with SoftwareCamera(config, COLOR, DEPTH_848, T) as cam:
        start = time.monotonic()
        for n in range(N_FRAMES):
            time.sleep(max(0.0, start + n * FRAME_PERIOD_NS * 1e-9 - time.monotonic()))
            depth = np.full((DEPTH_848.height, DEPTH_848.width), plane_mm(n), np.uint16)
            cam.push(color_image(COLOR, n), depth, stamp_ns(n), n)
            cam.read(timeout_s=0.0 if n == 0 else 1.0)


def core_depths(path: Path) -> dict[int, np.ndarray]:
    """What the camera core itself makes of the file (aligned, no filters): depth_mm by frame number."""
    depths = {}
    from dexstack.camera import RealSenseSource

    with RealSenseSource(CameraConfig(source="playback", playback_path=str(path))) as source:
        try:
            while True:
                frame = source.read(timeout_s=5.0)
                depths[frame.frame_number] = frame.depth_mm
        except PlaybackEnded:
            pass
    return depths


def main(out_dir: str) -> None:
    out = Path(out_dir)
    record(out / "recording.db3")
    depths = core_depths(out / "recording.db3")
    np.savez_compressed(out / "core_frames.npz", **{str(n): d for n, d in depths.items()})


if __name__ == "__main__":
    main(sys.argv[1])
