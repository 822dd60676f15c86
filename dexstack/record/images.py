"""sensor_msgs Image / CompressedImage payloads (CDR bytes, as recorded) <-> numpy arrays. No ROS imports.

The pixel conversions are :mod:`dexstack.image_codec`'s (the one image codec); this module only adds the CDR
decoding/encoding of the recorded messages.
"""

from __future__ import annotations

import numpy as np

from dexstack.image_codec import compress, decode_msg, decompress, depth_mm, to_rgb8
from dexstack.record.msgdefs import TypeRegistry

__all__ = ["COMPRESSED_TYPE", "IMAGE_TYPE", "compress_image", "decode_image", "depth_mm", "image_array", "to_rgb8"]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


def image_array(msg) -> np.ndarray:
    """Pixels of a (rosbags) sensor_msgs/Image: (H, W, C) uint8 for color, (H, W) uint8/uint16/float32 else."""
    return decode_msg(msg)


def decode_image(registry: TypeRegistry, type_name: str, data: bytes) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of an Image or CompressedImage payload; compressed color comes back as rgb8."""
    msg = registry.decode(data, type_name)
    if type_name == IMAGE_TYPE:
        return decode_msg(msg), str(msg.encoding)
    if type_name == COMPRESSED_TYPE:
        return decompress(str(msg.format), msg.data)
    raise ValueError(f"{type_name} is not an image type")


def compress_image(registry: TypeRegistry, data: bytes, jpeg_quality: int = 90) -> bytes:
    """CDR of a sensor_msgs/CompressedImage (same header) for a sensor_msgs/Image payload."""
    msg = registry.decode(data, IMAGE_TYPE)
    fmt, payload = compress(decode_msg(msg), str(msg.encoding), jpeg_quality)
    cls = registry.message_class(COMPRESSED_TYPE)
    out = cls(header=msg.header, format=fmt, data=np.frombuffer(payload, dtype=np.uint8))
    return registry.encode(out, COMPRESSED_TYPE)
