"""RGB-D plumbing of the perception nodes: image buffers to arrays, and color/depth pairing by stamp."""

import numpy as np
import pytest

from dexstack.image_codec import ImageError, color_to_rgb8, depth_to_array
from dexstack.perception.rgbd import StampPairer

MS = 1_000_000


def test_color_buffers_with_row_padding_and_bgr_order():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    padded = np.zeros((4, 20), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    np.testing.assert_array_equal(color_to_rgb8(4, 5, "rgb8", 20, padded.tobytes()), rgb)
    bgr = rgb[..., ::-1].copy()
    np.testing.assert_array_equal(color_to_rgb8(4, 5, "bgr8", 15, bgr.tobytes()), rgb)
    rgba = np.concatenate((rgb, np.full((4, 5, 1), 255, np.uint8)), axis=-1)
    np.testing.assert_array_equal(color_to_rgb8(4, 5, "rgba8", 20, rgba.tobytes()), rgb)
    with pytest.raises(ImageError, match="not supported"):
        color_to_rgb8(4, 5, "yuv422", 10, bytes(40))
    with pytest.raises(ImageError, match="does not hold"):
        color_to_rgb8(4, 5, "rgb8", 15, bytes(30))


def test_depth_buffers_in_either_byte_order():
    depth = np.array([[0, 1, 1000], [65535, 256, 7]], dtype=np.uint16)
    np.testing.assert_array_equal(depth_to_array(2, 3, "16UC1", 6, depth.astype("<u2").tobytes()), depth)
    np.testing.assert_array_equal(depth_to_array(2, 3, "16UC1", 6, depth.astype(">u2").tobytes(), True), depth)
    with pytest.raises(ImageError):
        depth_to_array(2, 3, "32FC1", 12, bytes(24))


def test_pairer_pairs_by_stamp_drops_the_unmatched_and_never_goes_back():
    pairer = StampPairer(tolerance_ns=5 * MS)
    assert pairer.add_color(100 * MS, "c100") is None
    pair = pairer.add_depth(102 * MS, "d102")
    assert (pair.stamp_ns, pair.color, pair.depth) == (100 * MS, "c100", "d102")
    assert pairer.add_color(133 * MS, "c133") is None
    assert pairer.add_color(166 * MS, "c166") is None
    pair = pairer.add_depth(166 * MS, "d166")  # c133's depth never came
    assert (pair.color, pair.depth) == ("c166", "d166")
    assert pairer.dropped == 1
    assert pairer.add_depth(150 * MS, "late") is None
    assert pairer.add_color(150 * MS, "late") is None  # older than the last pair: not delivered
    assert pairer.add_depth(200 * MS, "d200") is None
    assert pairer.add_color(220 * MS, "c220") is None  # 20 ms apart: no pair
