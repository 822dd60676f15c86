"""Camera configuration: which source to open, stream profiles, post-processing and recording."""

from __future__ import annotations

import re
from dataclasses import dataclass

SOURCES = ("device", "playback", "software")
RECORD_SUFFIX = ".db3"  # librealsense 2.59 records (and plays back) rosbag2 sqlite files

_PROFILE_RE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def parse_profile(profile: str) -> tuple[int, int, int]:
    """Parse ``"WIDTHxHEIGHTxFPS"`` (e.g. ``"640x480x30"``) into ``(width, height, fps)``.

    Raises ValueError naming the bad string when it does not match or has a zero field.
    """
    match = _PROFILE_RE.match(profile.strip()) if isinstance(profile, str) else None
    if match is None:
        raise ValueError(f"invalid stream profile {profile!r}: expected 'WIDTHxHEIGHTxFPS', e.g. '640x480x30'")
    width, height, fps = (int(g) for g in match.groups())
    if min(width, height, fps) == 0:
        raise ValueError(f"invalid stream profile {profile!r}: width, height and fps must be positive")
    return width, height, fps


@dataclass
class CameraConfig:
    """Settings shared by :class:`~dexstack.camera.realsense.RealSenseSource` and
    :class:`~dexstack.camera.software.SoftwareCamera`.

    ``source``: ``"device"`` (a connected RealSense, the first one unless ``serial`` is set),
    ``"playback"`` (a ``.db3`` recording at ``playback_path``; the recorded profiles are used and
    ``color_profile``/``depth_profile`` are ignored) or ``"software"`` (frames pushed by the caller).

    Post-processing runs on depth before alignment, in the order decimation, spatial, temporal, hole
    filling. Decimation (magnitude 2) halves the depth image's width and height; with ``align_depth``
    the output is still at color resolution, otherwise ``depth_mm`` is the decimated size.
    """

    source: str = "device"
    serial: str = ""
    playback_path: str = ""
    color_profile: str = "640x480x30"
    depth_profile: str = "640x480x30"
    align_depth: bool = True
    decimation_filter: bool = False
    spatial_filter: bool = False
    temporal_filter: bool = False
    hole_filling_filter: bool = False
    record_path: str = ""
    repeat_playback: bool = False
    playback_real_time: bool = False  # False: the file is read as fast as frames are consumed, none dropped


def validate_config(config: CameraConfig) -> list[str]:
    """Return every problem with ``config`` as a readable sentence; an empty list means it is usable."""
    errors: list[str] = []
    if config.source not in SOURCES:
        errors.append(f"source {config.source!r} is not one of {', '.join(SOURCES)}")
    for name in ("color_profile", "depth_profile"):
        try:
            parse_profile(getattr(config, name))
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
    if config.source == "playback":
        if not config.playback_path:
            errors.append("source 'playback' needs playback_path (a .db3 recording)")
        if config.record_path:
            errors.append("record_path cannot be used with source 'playback' (librealsense cannot re-record one)")
    if config.record_path and not config.record_path.endswith(RECORD_SUFFIX):
        errors.append(f"record_path {config.record_path!r} must end with {RECORD_SUFFIX} (librealsense writes rosbag2)")
    return errors
