"""sensor_msgs Image / CompressedImage payloads <-> numpy arrays, from CDR bytes. No ROS imports.

Compression follows ``compressed_image_transport``'s ``format`` strings: 8-bit color and mono as JPEG
(``"rgb8; jpeg compressed bgr8"``), 16-bit depth losslessly as PNG (``"16UC1; png compressed 16UC1"``).
OpenCV (``cv2``) is imported only when compressing or decoding a CompressedImage.
"""

from __future__ import annotations

import numpy as np

from dexstack.record.msgdefs import TypeRegistry

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
_COLOR = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}
_MONO8 = {"mono8", "8UC1"}
_DEPTH16 = {"16UC1", "mono16"}


def image_array(msg) -> np.ndarray:
    """Pixels of a (rosbags) sensor_msgs/Image: (H, W, C) uint8 for color, (H, W) uint8/uint16/float32 else."""
    h, w, enc = int(msg.height), int(msg.width), str(msg.encoding)
    raw = np.asarray(msg.data, dtype=np.uint8)
    if enc in _COLOR:
        c = _COLOR[enc]
        rows = raw[: h * msg.step].reshape(h, msg.step)[:, : w * c]
        return rows.reshape(h, w, c)
    if enc in _MONO8:
        return raw[: h * msg.step].reshape(h, msg.step)[:, :w]
    if enc in _DEPTH16 or enc == "32FC1":
        dtype = np.dtype(np.uint16 if enc in _DEPTH16 else np.float32)
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
        rows = raw[: h * msg.step].reshape(h, msg.step)[:, : w * dtype.itemsize]
        return np.ascontiguousarray(rows).view(dtype).reshape(h, w).astype(dtype.newbyteorder("="))
    raise ValueError(f"unsupported image encoding '{enc}'")


def to_rgb8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a color or mono8 array of the given ROS encoding."""
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return pixels[:, :, ::-1]
    if encoding == "rgba8":
        return pixels[:, :, :3]
    if encoding == "bgra8":
        return pixels[:, :, 2::-1]
    if encoding in _MONO8:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    raise ValueError(f"'{encoding}' is not a color encoding")


def depth_mm(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in millimetres (uint16) from 16UC1/mono16 (mm) or 32FC1 (m)."""
    if encoding in _DEPTH16:
        return pixels.astype(np.uint16, copy=False)
    if encoding == "32FC1":
        return np.nan_to_num(pixels * 1000.0, nan=0.0, posinf=0.0, neginf=0.0).clip(0, 65535).astype(np.uint16)
    raise ValueError(f"'{encoding}' is not a depth encoding")


def decode_image(registry: TypeRegistry, type_name: str, data: bytes) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of an Image or CompressedImage payload; compressed color comes back as rgb8."""
    msg = registry.decode(data, type_name)
    if type_name == IMAGE_TYPE:
        return image_array(msg), str(msg.encoding)
    if type_name == COMPRESSED_TYPE:
        import cv2

        fmt = str(msg.format)
        encoding = fmt.split(";")[0].strip() if ";" in fmt else ""
        pixels = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ValueError(f"cannot decode a CompressedImage in format '{fmt}'")
        if pixels.ndim == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            return pixels, "rgb8"
        if pixels.dtype == np.uint16:
            return pixels, encoding if encoding in _DEPTH16 else "16UC1"
        return pixels, "mono8"
    raise ValueError(f"{type_name} is not an image type")


def compress_image(registry: TypeRegistry, data: bytes, jpeg_quality: int = 90) -> bytes:
    """CDR of a sensor_msgs/CompressedImage (same header) for a sensor_msgs/Image payload."""
    import cv2

    msg = registry.decode(data, IMAGE_TYPE)
    enc = str(msg.encoding)
    pixels = image_array(msg)
    if enc in _COLOR:
        bgr = cv2.cvtColor(to_rgb8(pixels, enc), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        fmt = f"{enc}; jpeg compressed bgr8"
    elif enc in _MONO8:
        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        fmt = f"{enc}; jpeg compressed mono8"
    elif enc in _DEPTH16:
        ok, buf = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        fmt = f"{enc}; png compressed {enc}"
    else:
        raise ValueError(f"no compression for encoding '{enc}'")
    if not ok:
        raise ValueError(f"OpenCV could not encode a {enc} image")
    cls = registry.message_class(COMPRESSED_TYPE)
    out = cls(header=msg.header, format=fmt, data=np.frombuffer(buf.tobytes(), dtype=np.uint8))
    return registry.encode(out, COMPRESSED_TYPE)
