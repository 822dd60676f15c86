"""RealSenseSource: playback of a software-device recording through rs.pipeline, and its error paths."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyrealsense2 as rs
import pytest

from dexstack.camera import (
    CameraConfig,
    CameraError,
    PlaybackEnded,
    RealSenseSource,
    RGBDFrame,
    SoftwareCamera,
)
from tests.camera.synthetic import (
    COLOR_640,
    DEPTH_848,
    assert_intrinsics_close,
    color_image,
    depth_image,
    software_config,
    stamp_ns,
)

N_FRAMES = 8


@dataclass
class Recording:
    path: Path
    T_color_depth: np.ndarray
    colors: list[np.ndarray]
    depths: list[np.ndarray]
    live: dict[int, RGBDFrame]  # aligned frames SoftwareCamera produced while recording, by frame number


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("camera") / "software.db3"
    T = np.eye(4)
    T[:3, 3] = [0.015, 0.0, 0.0]
    colors = [color_image(COLOR_640, n) for n in range(N_FRAMES)]
    depths = [depth_image(DEPTH_848, n, low=900, high=1100) for n in range(N_FRAMES)]
    live = {}
    config = software_config(depth_profile="848x480x30", record_path=str(path))
    with SoftwareCamera(config, COLOR_640, DEPTH_848, T) as cam:
        for n in range(N_FRAMES):
            cam.push(colors[n], depths[n], stamp_ns(n), n)
            frame = cam.read(timeout_s=0.05 if n == 0 else 1.0)
            if frame is not None:
                live[frame.frame_number] = frame
    return Recording(path, T, colors, depths, live)


def read_all(source: RealSenseSource) -> list[RGBDFrame]:
    frames = []
    with pytest.raises(PlaybackEnded):
        while True:
            frame = source.read(timeout_s=2.0)
            assert frame is not None, "playback stalled instead of ending"
            frames.append(frame)
    return frames


def playback_config(recording: Recording, **overrides: object) -> CameraConfig:
    return CameraConfig(source="playback", playback_path=str(recording.path), **overrides)


def test_playback_returns_recorded_pixels_intrinsics_and_stamps(recording):
    with RealSenseSource(playback_config(recording, align_depth=False)) as source:
        frames = read_all(source)
        np.testing.assert_allclose(source.T_color_depth, recording.T_color_depth, atol=1e-7)
        assert source.dropped_frames == 0

    assert [f.frame_number for f in frames] == list(range(N_FRAMES))
    for n, frame in enumerate(frames):
        assert frame.stamp_ns == stamp_ns(n)
        assert frame.stamp_domain == "hardware_clock"
        np.testing.assert_array_equal(frame.color_rgb8, recording.colors[n])
        np.testing.assert_array_equal(frame.depth_mm, recording.depths[n])
        assert_intrinsics_close(frame.color_intrinsics, COLOR_640)
        assert_intrinsics_close(frame.depth_intrinsics, DEPTH_848)
        assert frame.depth_scale_m == pytest.approx(0.001)


def test_playback_alignment_matches_the_live_software_path(recording):
    with RealSenseSource(playback_config(recording)) as source:
        frames = {f.frame_number: f for f in read_all(source)}
    assert recording.live.keys() == set(range(1, N_FRAMES))
    for n, live in recording.live.items():
        assert frames[n].depth_aligned and frames[n].depth_mm.shape == (480, 640)
        np.testing.assert_array_equal(frames[n].depth_mm, live.depth_mm)
        np.testing.assert_array_equal(frames[n].color_rgb8, live.color_rgb8)


def test_end_of_playback_is_reported_promptly_and_stays_reported(recording):
    source = RealSenseSource(playback_config(recording))
    source.start()
    for _ in range(N_FRAMES):
        assert source.read(timeout_s=2.0) is not None
    started = time.monotonic()
    with pytest.raises(PlaybackEnded, match="has ended"):
        source.read(timeout_s=10.0)
    assert time.monotonic() - started < 2.0
    assert source.playback_ended
    with pytest.raises(PlaybackEnded):
        source.read(timeout_s=0.1)
    source.stop()
    source.stop()


def test_repeat_playback_loops_without_counting_drops(recording):
    with RealSenseSource(playback_config(recording, repeat_playback=True)) as source:
        numbers = [source.read(timeout_s=2.0).frame_number for _ in range(2 * N_FRAMES + 2)]
        assert source.dropped_frames == 0
        assert not source.playback_ended
    assert numbers == [*range(N_FRAMES), *range(N_FRAMES), 0, 1]


def test_missing_playback_file(tmp_path):
    path = tmp_path / "absent.db3"
    with pytest.raises(CameraError, match=re.escape(f"playback file not found: {path}")):
        RealSenseSource(CameraConfig(source="playback", playback_path=str(path))).start()


def test_corrupt_playback_file(tmp_path):
    path = tmp_path / "corrupt.db3"
    path.write_text("not a recording")
    with pytest.raises(CameraError, match=re.escape(f"cannot play back {path}")) as info:
        RealSenseSource(CameraConfig(source="playback", playback_path=str(path))).start()
    assert "not a database" in str(info.value)  # the SDK's own reason is kept


@pytest.mark.skipif(len(rs.context().query_devices()) > 0, reason="a RealSense is connected")
def test_device_source_without_a_camera():
    with pytest.raises(CameraError, match=r"no RealSense device connected \(librealsense found 0 devices\)"):
        RealSenseSource(CameraConfig(source="device")).start()


def test_device_source_with_unknown_serial():
    with pytest.raises(CameraError, match=re.escape("serial 'no-such-serial' not found; connected: ")):
        RealSenseSource(CameraConfig(source="device", serial="no-such-serial")).start()


def test_bad_config_is_rejected_before_touching_the_sdk():
    expected = "invalid camera config: color_profile: invalid stream profile '640x480'"
    with pytest.raises(CameraError, match=re.escape(expected)):
        RealSenseSource(CameraConfig(source="device", color_profile="640x480")).start()
    with pytest.raises(CameraError, match="use dexstack.camera.software.SoftwareCamera"):
        RealSenseSource(CameraConfig(source="software"))
    with pytest.raises(CameraError, match="before start"):
        RealSenseSource(CameraConfig(source="device")).read(0.01)
