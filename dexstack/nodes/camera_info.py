"""The one sensor_msgs/CameraInfo builder (camera node, sim cell, calibration tools)."""

from __future__ import annotations

from sensor_msgs.msg import CameraInfo

from dexstack.camera_model import CameraModel


def camera_info_msg(model: CameraModel, stamp, frame_id: str) -> CameraInfo:
    """CameraInfo of an unrectified stream with these intrinsics (R identity, P = [K | 0]), stamped ``stamp``."""
    f = model.camera_info_fields()
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = f["width"], f["height"]
    msg.distortion_model = f["distortion_model"]
    msg.d, msg.k, msg.r, msg.p = f["d"], f["k"], f["r"], f["p"]
    return msg
