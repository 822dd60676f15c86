"""The one image codec: numpy <-> sensor_msgs/Image fields and CompressedImage payloads."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dexstack import image_codec as ic


def _rgb(h=4, w=5):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", _rgb()),
    ("bgra8", np.arange(4 * 5 * 4, dtype=np.uint8).reshape(4, 5, 4)),
    ("mono8", np.arange(20, dtype=np.uint8).reshape(4, 5)),
    ("16UC1", (np.arange(20, dtype=np.uint16) * 3001).reshape(4, 5)),
    ("32FC1", np.linspace(0.1, 3.0, 20, dtype=np.float32).reshape(4, 5)),
])
def test_encode_then_decode_is_exact(encoding, pixels):
    fields = ic.encode(pixels, encoding)
    assert isinstance(fields["data"], bytes) and fields["step"] * fields["height"] == len(fields["data"])
    out = ic.decode_msg(SimpleNamespace(**fields))
    np.testing.assert_array_equal(out, pixels)
    assert out.dtype == pixels.dtype


def test_decode_handles_padding_byte_order_and_channel_order():
    rgb = _rgb()
    padded = np.zeros((4, 20), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    np.testing.assert_array_equal(ic.decode(4, 5, "rgb8", 20, padded.tobytes()), rgb)
    np.testing.assert_array_equal(ic.color_to_rgb8(4, 5, "bgr8", 15, rgb[..., ::-1].copy().tobytes()), rgb)
    depth = np.array([[1, 2, 3], [1000, 2000, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(ic.depth_to_array(2, 3, "16UC1", 6, depth.astype(">u2").tobytes(), True), depth)
    np.testing.assert_array_equal(ic.depth_mm(np.array([[0.5, np.nan]], np.float32), "32FC1"), [[500, 0]])


@pytest.mark.parametrize("call, message", [
    (lambda: ic.decode(4, 5, "yuv422", 10, bytes(40)), "not supported"),
    (lambda: ic.decode(4, 5, "rgb8", 15, bytes(30)), "does not hold 4 rows"),
    (lambda: ic.depth_to_array(2, 3, "32FC1", 12, bytes(24)), "use 16UC1"),
    (lambda: ic.encode(np.zeros((4, 5), np.uint8), "rgb8"), r"needs a \(H, W, 3\) uint8"),
    (lambda: ic.encode(np.zeros((4, 5), np.float64), "16UC1"), "uint16"),
    (lambda: ic.to_rgb8(np.zeros((2, 2), np.uint16), "16UC1"), "not a color encoding"),
    (lambda: ic.decompress("rgb8; jpeg compressed bgr8", b"not a jpeg"), "cannot decode"),
])
def test_bad_buffers_are_refused_with_the_reason(call, message):
    with pytest.raises(ic.ImageError, match=message):
        call()


def test_depth_compresses_losslessly_and_color_as_jpeg():
    depth = (np.arange(48 * 64, dtype=np.uint16) * 21).reshape(48, 64)
    fmt, data = ic.compress(depth, "16UC1")
    assert fmt == "16UC1; png compressed 16UC1"
    back, encoding = ic.decompress(fmt, data)
    np.testing.assert_array_equal(back, depth)
    assert encoding == "16UC1"
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 40
    fmt, data = ic.compress(rgb, "rgb8", jpeg_quality=95)
    back, encoding = ic.decompress(fmt, data)
    assert fmt == "rgb8; jpeg compressed bgr8" and encoding == "rgb8"
    assert np.abs(back.astype(int) - rgb).max() <= 3  # red stays red: channel order kept through BGR JPEG
