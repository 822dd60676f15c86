"""Synthetic camera data for the camera core tests: realistic intrinsics and deterministic images."""

from __future__ import annotations

import numpy as np

from dexstack.camera import CameraConfig
from dexstack.camera_model import CameraModel

# D435-like, deliberately non-integer, so pixel-centre rounding does not hide alignment errors.
COLOR_640 = CameraModel(640, 480, 615.3, 615.1, 318.2, 241.7)
DEPTH_848 = CameraModel(848, 480, 421.6, 421.6, 425.3, 238.9)

FRAME_PERIOD_NS = 33_333_333


def stamp_ns(frame_number: int) -> int:
    """Device-clock stamp of frame ``frame_number`` at 30 Hz, starting at 1 s."""
    return 1_000_000_000 + frame_number * FRAME_PERIOD_NS


def color_image(intr: CameraModel, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (intr.height, intr.width, 3), dtype=np.uint8)


def depth_image(intr: CameraModel, seed: int, low: int = 400, high: int = 4000) -> np.ndarray:
    return np.random.default_rng(1000 + seed).integers(low, high, (intr.height, intr.width), dtype=np.uint16)


def software_config(profile: str = "640x480x30", **overrides: object) -> CameraConfig:
    fields = {"source": "software", "color_profile": profile, "depth_profile": profile, **overrides}
    return CameraConfig(**fields)


def assert_intrinsics_close(actual: CameraModel, expected: CameraModel) -> None:
    """librealsense stores intrinsics as float32: compare to that precision."""
    assert (actual.width, actual.height, actual.distortion_model) == (expected.width, expected.height,
                                                               expected.distortion_model)
    got = [actual.fx, actual.fy, actual.cx, actual.cy, *actual.D]
    want = [expected.fx, expected.fy, expected.cx, expected.cy, *expected.D]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
