"""RGB-D camera core (no ROS): RealSense device/playback and software sources yielding :class:`RGBDFrame`.

``RealSenseSource`` opens a connected RealSense or a ``.db3`` recording through ``rs.pipeline``;
``SoftwareCamera`` feeds caller-provided images through ``rs.software_device``. Both share
``FrameProcessor`` (depth filters, ``rs.align`` to color, copy-out to millimetre depth).
"""

from dexstack.camera.config import CameraConfig, parse_profile, validate_config
from dexstack.camera.errors import CameraError, PlaybackEnded
from dexstack.camera.types import RGBDFrame, RGBDSource

# The librealsense parts load on first use: importing pyrealsense2 into a process that also runs Fast DDS corrupts
# the heap at exit (rc 139 after a clean run), and the config, stamps and types are used by ROS processes too.
_LAZY = {
    "FrameProcessor": "dexstack.camera.processing",
    "RealSenseSource": "dexstack.camera.realsense",
    "describe_connected_devices": "dexstack.camera.realsense",
    "SoftwareCamera": "dexstack.camera.software",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CameraConfig",
    "CameraError",
    "FrameProcessor",
    "PlaybackEnded",
    "RGBDFrame",
    "RGBDSource",
    "RealSenseSource",
    "SoftwareCamera",
    "describe_connected_devices",
    "parse_profile",
    "validate_config",
]
