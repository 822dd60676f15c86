"""Synthetic camera data for the camera core tests: realistic intrinsics and deterministic images."""

from __future__ import annotations

import numpy as np

from dexstack.camera import CameraConfig, Intrinsics

# D435-like, deliberately non-integer, so pixel-centre rounding does not hide alignment errors.
COLOR_640 = Intrinsics(640, 480, 615.3, 615.1, 318.2, 241.7)
DEPTH_848 = Intrinsics(848, 480, 421.6, 421.6, 425.3, 238.9)

FRAME_PERIOD_NS = 33_333_333


def stamp_ns(frame_number: int) -> int:
    """Device-clock stamp of frame ``frame_number`` at 30 Hz, starting at 1 s."""
    return 1_000_000_000 + frame_number * FRAME_PERIOD_NS


def color_image(intr: Intrinsics, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (intr.height, intr.width, 3), dtype=np.uint8)


def depth_image(intr: Intrinsics, seed: int, low: int = 400, high: int = 4000) -> np.ndarray:
    return np.random.default_rng(1000 + seed).integers(low, high, (intr.height, intr.width), dtype=np.uint16)


def software_config(profile: str = "640x480x30", **overrides: object) -> CameraConfig:
    fields = {"source": "software", "color_profile": profile, "depth_profile": profile, **overrides}
    return CameraConfig(**fields)


def assert_intrinsics_close(actual: Intrinsics, expected: Intrinsics) -> None:
    """librealsense stores intrinsics as float32: compare to that precision."""
    assert (actual.width, actual.height, actual.model) == (expected.width, expected.height, expected.model)
    got = [actual.fx, actual.fy, actual.ppx, actual.ppy, *actual.coeffs]
    want = [expected.fx, expected.fy, expected.ppx, expected.ppy, *expected.coeffs]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
