"""RGB-D camera core (no ROS): RealSense device/playback and software sources yielding :class:`RGBDFrame`.

``RealSenseSource`` opens a connected RealSense or a ``.db3`` recording through ``rs.pipeline``;
``SoftwareCamera`` feeds caller-provided images through ``rs.software_device``. Both share
``FrameProcessor`` (depth filters, ``rs.align`` to color, copy-out to millimetre depth).
"""

from dexstack.camera.config import CameraConfig, parse_profile, validate_config
from dexstack.camera.errors import CameraError, PlaybackEnded
from dexstack.camera.processing import FrameProcessor
from dexstack.camera.realsense import RealSenseSource, describe_connected_devices
from dexstack.camera.software import SoftwareCamera
from dexstack.camera.types import RGBDFrame, RGBDSource

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
