"""The one conversion between numpy images and sensor_msgs/Image (+ CompressedImage) payloads. No ROS imports.

Used by the nodes that publish images (camera, sim_cell), the perception input, the recorder's compression and the
LeRobot export. Works on the fields of any Image-like object (rclpy message, rosbags message, plain values).

Encodings: ``rgb8``/``bgr8``/``rgba8``/``bgra8`` -> (H, W, C) uint8; ``mono8``/``8UC1`` -> (H, W) uint8;
``16UC1``/``mono16`` (depth in mm) -> (H, W) uint16; ``32FC1`` (depth in m) -> (H, W) float32. Rows may be padded
(``step`` bytes each). Compression follows ``compressed_image_transport``'s ``format`` strings: 8-bit color and mono
as JPEG (``"rgb8; jpeg compressed bgr8"``), 16-bit depth losslessly as PNG (``"16UC1; png compressed 16UC1"``).
OpenCV is imported only to compress or decompress.
"""

from __future__ import annotations

import numpy as np

COLOR_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}
MONO8_ENCODINGS = ("mono8", "8UC1")
DEPTH16_ENCODINGS = ("16UC1", "mono16")
DEPTH_ENCODINGS = (*DEPTH16_ENCODINGS, "32FC1")
_SCALAR = {**{e: np.dtype(np.uint8) for e in MONO8_ENCODINGS}, **{e: np.dtype(np.uint16) for e in DEPTH16_ENCODINGS},
           "32FC1": np.dtype(np.float32)}


class ImageError(ValueError):
    """An image buffer does not match its declared size or encoding, or cannot be (de)compressed."""


def decode(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Pixels of an Image buffer (see the module docstring for shapes); a view-free copy in native byte order."""
    h, w, encoding = int(height), int(width), str(encoding)
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if encoding in COLOR_ENCODINGS:
        channels, dtype = COLOR_ENCODINGS[encoding][0], np.dtype(np.uint8)
    elif encoding in _SCALAR:
        channels, dtype = 1, _SCALAR[encoding].newbyteorder(">" if is_bigendian else "<")
    else:
        raise ImageError(f"image encoding '{encoding}' is not supported (use one of "
                         f"{sorted([*COLOR_ENCODINGS, *_SCALAR])})")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes or buf.size < step * h:
        raise ImageError(f"{encoding} image buffer of {buf.size} bytes does not hold {h} rows of step {step} "
                         f"({w} px wide)")
    rows = np.ascontiguousarray(buf[: step * h].reshape(h, step)[:, :row_bytes])
    pixels = rows.view(dtype).reshape((h, w, channels) if encoding in COLOR_ENCODINGS else (h, w))
    return pixels.astype(dtype.newbyteorder("="), copy=True)


def decode_msg(msg) -> np.ndarray:
    """:func:`decode` of an Image-like object's fields."""
    return decode(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))


def to_rgb8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from decoded color or mono8 pixels of the given encoding."""
    if encoding in COLOR_ENCODINGS:
        rgb = pixels[..., :3]
        return np.ascontiguousarray(rgb[..., ::-1] if COLOR_ENCODINGS[encoding][1] else rgb)
    if encoding in MONO8_ENCODINGS:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    raise ImageError(f"'{encoding}' is not a color encoding (use one of {sorted(COLOR_ENCODINGS)})")


def depth_mm(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in millimetres (uint16, 0 = no return) from decoded 16UC1/mono16 (mm) or 32FC1 (m) pixels."""
    if encoding in DEPTH16_ENCODINGS:
        return pixels.astype(np.uint16, copy=False)
    if encoding == "32FC1":
        return np.nan_to_num(pixels * 1000.0, nan=0.0, posinf=0.0, neginf=0.0).clip(0, 65535).astype(np.uint16)
    raise ImageError(f"'{encoding}' is not a depth encoding (use one of {list(DEPTH_ENCODINGS)})")


def color_to_rgb8(height: int, width: int, encoding: str, step: int, data) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a color Image buffer (rgb8, bgr8, rgba8, bgra8)."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageError(f"color encoding '{encoding}' is not supported (use one of {sorted(COLOR_ENCODINGS)})")
    return to_rgb8(decode(height, width, encoding, step, data), encoding)


def depth_to_array(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False
                   ) -> np.ndarray:
    """(H, W) uint16 depth in mm (0 = no return) from a 16UC1 / mono16 Image buffer."""
    if encoding not in DEPTH16_ENCODINGS:
        raise ImageError(f"depth encoding '{encoding}' is not supported (use 16UC1)")
    return decode(height, width, encoding, step, data, is_bigendian)


def encode(pixels: np.ndarray, encoding: str) -> dict:
    """The fields of a sensor_msgs/Image holding ``pixels``: ``Image(**encode(rgb, "rgb8"))``. ``data`` is bytes
    (assigning an ndarray to an rclpy message field costs ~70 ms per 640x480 frame; bytes ~0.3 ms)."""
    pixels = np.asarray(pixels)
    if encoding in COLOR_ENCODINGS:
        channels, dtype = COLOR_ENCODINGS[encoding][0], np.dtype(np.uint8)
        expected = 3
    elif encoding in _SCALAR:
        channels, dtype, expected = 1, _SCALAR[encoding], 2
    else:
        raise ImageError(f"image encoding '{encoding}' is not supported")
    if pixels.ndim != expected or (channels > 1 and pixels.shape[2] != channels) or pixels.dtype != dtype:
        raise ImageError(f"{encoding} needs a {f'(H, W, {channels})' if channels > 1 else '(H, W)'} {dtype} "
                         f"array, got {pixels.shape} {pixels.dtype}")
    h, w = pixels.shape[:2]
    little = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
    return {"height": int(h), "width": int(w), "encoding": encoding, "is_bigendian": 0,
            "step": int(w * channels * dtype.itemsize), "data": little.tobytes()}


def compress(pixels: np.ndarray, encoding: str, jpeg_quality: int = 90) -> tuple[str, bytes]:
    """(CompressedImage ``format``, bytes) of decoded pixels: JPEG for 8-bit color/mono, lossless PNG for 16-bit."""
    import cv2

    if encoding in COLOR_ENCODINGS:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(to_rgb8(pixels, encoding), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        fmt = f"{encoding}; jpeg compressed bgr8"
    elif encoding in MONO8_ENCODINGS:
        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        fmt = f"{encoding}; jpeg compressed mono8"
    elif encoding in DEPTH16_ENCODINGS:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels, dtype=np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        fmt = f"{encoding}; png compressed {encoding}"
    else:
        raise ImageError(f"no compression for encoding '{encoding}'")
    if not ok:
        raise ImageError(f"OpenCV could not encode a {encoding} image")
    return fmt, buf.tobytes()


def decompress(fmt: str, data) -> tuple[np.ndarray, str]:
    """(pixels, encoding) of a CompressedImage: color comes back as rgb8, 16-bit as its original encoding."""
    import cv2

    encoding = fmt.split(";")[0].strip() if ";" in fmt else ""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray)
                          else data.astype(np.uint8, copy=False), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageError(f"cannot decode a CompressedImage in format '{fmt}'")
    if pixels.ndim == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB), "rgb8"
    if pixels.dtype == np.uint16:
        return pixels, encoding if encoding in DEPTH16_ENCODINGS else "16UC1"
    return pixels, "mono8"
