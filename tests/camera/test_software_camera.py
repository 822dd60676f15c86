"""SoftwareCamera: frames pushed through rs.software_device, rs.syncer, filters and rs.align."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexstack.camera import CameraError, SoftwareCamera
from dexstack.camera_model import CameraModel
from tests.camera.synthetic import (
    COLOR_640,
    DEPTH_848,
    assert_intrinsics_close,
    color_image,
    depth_image,
    software_config,
    stamp_ns,
)

PLANE_MM = 1000
MARKER_COLS = (300, 310)  # a vertical band of "no data" in the depth image, used to see where alignment moves it


def push_and_read(cam: SoftwareCamera, color: np.ndarray, depth: np.ndarray, frame_number: int):
    """Push one pair and read; frame 0 is the syncer's discovery pair and never yields a frame, so don't wait long."""
    cam.push(color, depth, stamp_ns(frame_number), frame_number)
    return cam.read(timeout_s=0.05 if frame_number == 0 else 1.0)


def aligned_plane(T_color_depth: np.ndarray, intr: CameraModel = COLOR_640) -> np.ndarray:
    """Align a fronto-parallel plane at PLANE_MM with a no-data marker band; depth and color share ``intr``."""
    depth = np.full((intr.height, intr.width), PLANE_MM, np.uint16)
    depth[:, MARKER_COLS[0] : MARKER_COLS[1]] = 0
    color = color_image(intr, 0)
    with SoftwareCamera(software_config(), intr, intr, T_color_depth) as cam:
        frames = [push_and_read(cam, color, depth, n) for n in range(3)]
    return frames[-1].depth_mm


def expected_marker_centre_u(T_color_depth: np.ndarray, intr: CameraModel = COLOR_640) -> float:
    """Where the marker centre, seen by the depth camera on the principal row, lands in the color image."""
    u_depth = (MARKER_COLS[0] + MARKER_COLS[1] - 1) / 2
    z_m = PLANE_MM / 1000
    p_depth = np.array([(u_depth - intr.cx) / intr.fx * z_m, 0.0, z_m, 1.0])
    p_color = T_color_depth @ p_depth
    return intr.fx * p_color[0] / p_color[2] + intr.cx


def marker_centre_u(depth_mm: np.ndarray, row: int) -> float:
    """Centre of the longest interior run of zeros around ``row`` (median over nearby rows).

    rs.align leaves a few isolated empty rows/columns; the longest run ignores them.
    """
    centres = []
    for v in range(row - 5, row + 6):
        zero = np.r_[False, depth_mm[v, 50:-50] == 0, False].astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(zero) == 1), np.flatnonzero(np.diff(zero) == -1)
        if len(starts) and (ends - starts).max() < 40:  # skip rows that alignment left empty
            k = np.argmax(ends - starts)
            centres.append(50 + (starts[k] + ends[k] - 1) / 2)
    assert centres, "marker band not found"
    return float(np.median(centres))


def test_frames_carry_injected_pixels_intrinsics_stamps_and_numbers():
    config = software_config(align_depth=False)
    with SoftwareCamera(config, COLOR_640, COLOR_640) as cam:
        colors = [color_image(COLOR_640, n) for n in range(6)]
        depths = [depth_image(COLOR_640, n) for n in range(6)]
        first = push_and_read(cam, colors[0], depths[0], 0)
        frames = []
        for n in range(1, 6):
            pushed_color, pushed_depth = colors[n].copy(), depths[n].copy()
            frame = push_and_read(cam, pushed_color, pushed_depth, n)
            pushed_color[:] = 0  # the SDK copied the pixels at push time
            pushed_depth[:] = 0
            frames.append(frame)

    assert first is None  # the syncer has not yet seen both streams
    assert [f.frame_number for f in frames] == [1, 2, 3, 4, 5]
    assert [f.stamp_ns for f in frames] == [stamp_ns(n) for n in range(1, 6)]
    for n, frame in zip(range(1, 6), frames, strict=True):
        assert frame.color_rgb8.dtype == np.uint8 and frame.color_rgb8.shape == (480, 640, 3)
        assert frame.depth_mm.dtype == np.uint16 and frame.depth_mm.shape == (480, 640)
        np.testing.assert_array_equal(frame.color_rgb8, colors[n])
        np.testing.assert_array_equal(frame.depth_mm, depths[n])
        assert frame.color_rgb8.flags.owndata and frame.depth_mm.flags.owndata
        assert_intrinsics_close(frame.color_intrinsics, COLOR_640)
        assert_intrinsics_close(frame.depth_intrinsics, COLOR_640)
        assert frame.depth_scale_m == pytest.approx(0.001)
        assert frame.stamp_domain == "hardware_clock"
        assert not frame.depth_aligned
    assert cam.dropped_frames == 0


def test_aligned_depth_with_identity_extrinsics_keeps_plane_and_marker():
    depth = aligned_plane(np.eye(4))
    valid = depth > 0
    assert set(np.unique(depth[valid])) == {PLANE_MM}
    assert marker_centre_u(depth, round(COLOR_640.cy)) == pytest.approx(np.mean(MARKER_COLS) - 0.5, abs=1.0)
    marker = np.zeros_like(valid)
    marker[:, MARKER_COLS[0] : MARKER_COLS[1]] = True
    assert valid[~marker].mean() > 0.95  # rs.align leaves a few empty raster lines, nothing more


def test_aligned_depth_moves_by_baseline_disparity():
    T = np.eye(4)
    T[0, 3] = 0.05  # color camera 5 cm to the -x side of the depth camera: points appear 30.8 px further right
    depth = aligned_plane(T)
    shift_px = COLOR_640.fx * 0.05 / (PLANE_MM / 1000)
    assert marker_centre_u(depth, round(COLOR_640.cy)) == pytest.approx(expected_marker_centre_u(T), abs=1.0)
    # Nothing in the depth image projects onto the leftmost shift_px columns of the color image.
    assert np.all(depth[:, : math.floor(shift_px) - 1] == 0)
    interior = depth[:, 60:280]
    assert (interior == PLANE_MM).mean() > 0.95 and set(np.unique(interior)) <= {0, PLANE_MM}


def test_aligned_depth_follows_rotation_of_T_color_depth():
    angle = math.radians(2.0)  # depth optical frame yawed about +y relative to color
    T = np.eye(4)
    T[:3, :3] = [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    expected = expected_marker_centre_u(T)
    assert expected - np.mean(MARKER_COLS) > 15  # the test discriminates R from R^T (about -21 px)
    assert marker_centre_u(aligned_plane(T), round(COLOR_640.cy)) == pytest.approx(expected, abs=1.5)


def test_depth_in_other_units_is_converted_to_millimetres():
    raw = np.full((480, 640), 12346, np.uint16)  # 1234.6 mm in 0.1 mm counts (D405 style)
    raw[0, :5] = [0, 4, 6, 50000, 65534]
    with SoftwareCamera(software_config(align_depth=False), COLOR_640, COLOR_640, depth_units_m=0.0001) as cam:
        frames = [push_and_read(cam, color_image(COLOR_640, n), raw, n) for n in range(2)]
    depth = frames[-1].depth_mm
    assert depth.dtype == np.uint16
    assert depth[240, 320] == 1235
    assert list(depth[0, :5]) == [0, 0, 1, 5000, 6553]  # rounded to the nearest mm; 0 stays "no data"
    assert frames[-1].depth_scale_m == pytest.approx(0.0001)


def test_dropped_frames_are_gaps_in_frame_numbers():
    with SoftwareCamera(software_config(), COLOR_640, COLOR_640) as cam:
        numbers = [0, 1, 2, 3, 4, 8, 9, 10]
        frames = [push_and_read(cam, color_image(COLOR_640, n), depth_image(COLOR_640, n), n) for n in numbers]
        assert [f.frame_number for f in frames[1:]] == numbers[1:]
        assert cam.dropped_frames == 3


def test_depth_is_aligned_to_a_color_stream_of_another_resolution():
    config = software_config(depth_profile="848x480x30")
    with SoftwareCamera(config, COLOR_640, DEPTH_848) as cam:
        frames = [
            push_and_read(cam, color_image(COLOR_640, n), np.full((480, 848), 1500, np.uint16), n) for n in range(3)
        ]
    frame = frames[-1]
    assert frame.depth_aligned and frame.depth_mm.shape == (480, 640)
    assert_intrinsics_close(frame.depth_intrinsics, COLOR_640)
    # The depth camera's wider field of view covers the whole color image.
    assert (frame.depth_mm == 1500).mean() > 0.95


@pytest.mark.parametrize(
    ("align_depth", "depth_shape"),
    [(False, (240, 424)), (True, (480, 640))],
)
def test_filters_decimate_before_alignment_and_fill_holes(align_depth, depth_shape):
    config = software_config(
        depth_profile="848x480x30",
        align_depth=align_depth,
        decimation_filter=True,
        spatial_filter=True,
        temporal_filter=True,
        hole_filling_filter=True,
    )
    depth = np.full((480, 848), 800, np.uint16)
    depth[200:210, 400:410] = 0  # a hole the hole-filling filter must close
    with SoftwareCamera(config, COLOR_640, DEPTH_848) as cam:
        frames = [push_and_read(cam, color_image(COLOR_640, n), depth, n) for n in range(4)]
    frame = frames[-1]
    assert frame.depth_mm.dtype == np.uint16 and frame.depth_mm.shape == depth_shape
    assert frame.color_rgb8.shape == (480, 640, 3)
    if align_depth:
        assert_intrinsics_close(frame.depth_intrinsics, COLOR_640)
        assert (frame.depth_mm == 800).mean() > 0.95
    else:
        assert frame.depth_intrinsics.fx == pytest.approx(DEPTH_848.fx / 2, rel=0.01)
        assert np.all(frame.depth_mm == 800)


def test_push_checks_images_against_intrinsics():
    with SoftwareCamera(software_config(), COLOR_640, COLOR_640) as cam:
        with pytest.raises(ValueError, match="depth_raw must be uint16"):
            cam.push(color_image(COLOR_640, 0), np.zeros((480, 640), np.float32), 0, 0)
        with pytest.raises(ValueError, match="color_rgb8 must be uint8"):
            cam.push(np.zeros((480, 640, 4), np.uint8), depth_image(COLOR_640, 0), 0, 0)


def test_lifecycle_and_config_errors():
    cam = SoftwareCamera(software_config(), COLOR_640, COLOR_640)
    with pytest.raises(CameraError, match="before start"):
        cam.push(color_image(COLOR_640, 0), depth_image(COLOR_640, 0), 0, 0)
    with pytest.raises(CameraError, match="before start"):
        cam.read(0.01)
    with pytest.raises(CameraError, match="does not match depth intrinsics 848x480"):
        SoftwareCamera(software_config(), COLOR_640, DEPTH_848)
    with pytest.raises(CameraError, match="needs source 'software'"):
        SoftwareCamera(software_config(source="device"), COLOR_640, COLOR_640)
