"""RGB-D input plumbing without ROS: image buffers to arrays, and pairing color with aligned depth by stamp.

``message_filters`` is not in the PyPI ROS 2 wheels, so :class:`StampPairer` does the approximate-time pairing the
perception nodes need: a color and a depth frame pair when their stamps differ by at most ``tolerance_ns``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

COLOR_ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "rgba8": (4, False), "bgra8": (4, True)}


class ImageError(ValueError):
    """An image buffer does not match its declared size or encoding."""


def color_to_rgb8(height: int, width: int, encoding: str, step: int, data: bytes | memoryview | np.ndarray
                  ) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image-like buffer (rgb8, bgr8, rgba8, bgra8; rows ``step`` bytes)."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageError(f"color encoding '{encoding}' is not supported (use one of {sorted(COLOR_ENCODINGS)})")
    channels, bgr = COLOR_ENCODINGS[encoding]
    buf = np.frombuffer(data, dtype=np.uint8)
    if step < width * channels or buf.size < step * height:
        raise ImageError(f"color image buffer of {buf.size} bytes does not hold {height} rows of step {step}")
    img = buf[: step * height].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1] if bgr else img)


def depth_to_array(height: int, width: int, encoding: str, step: int, data: bytes | memoryview | np.ndarray,
                   is_bigendian: bool = False) -> np.ndarray:
    """(H, W) uint16 depth (0 = no return) from a 16UC1 / mono16 buffer."""
    if encoding not in ("16UC1", "mono16"):
        raise ImageError(f"depth encoding '{encoding}' is not supported (use 16UC1)")
    dtype = np.dtype(">u2" if is_bigendian else "<u2")
    buf = np.frombuffer(data, dtype=np.uint8)
    if step < 2 * width or buf.size < step * height:
        raise ImageError(f"depth image buffer of {buf.size} bytes does not hold {height} rows of step {step}")
    rows = buf[: step * height].reshape(height, step)[:, : 2 * width]
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.uint16)


C = TypeVar("C")
D = TypeVar("D")


@dataclass(frozen=True)
class RgbdPair(Generic[C, D]):
    stamp_ns: int  # the color frame's stamp
    color: C
    depth: D


class StampPairer(Generic[C, D]):
    """Pairs color and depth frames whose stamps are within ``tolerance_ns``; frames older than a pair are dropped
    (counted in ``dropped``). Not thread-safe: call from one callback group."""

    def __init__(self, tolerance_ns: int = 15_000_000, max_pending: int = 4):
        self.tolerance_ns = int(tolerance_ns)
        self._color: deque[tuple[int, C]] = deque(maxlen=max_pending)
        self._depth: deque[tuple[int, D]] = deque(maxlen=max_pending)
        self.dropped = 0
        self.last_stamp_ns = -1

    def add_color(self, stamp_ns: int, color: C) -> RgbdPair[C, D] | None:
        self._push(self._color, stamp_ns, color)
        return self._match()

    def add_depth(self, stamp_ns: int, depth: D) -> RgbdPair[C, D] | None:
        self._push(self._depth, stamp_ns, depth)
        return self._match()

    def _push(self, queue: deque, stamp_ns: int, item) -> None:
        if len(queue) == queue.maxlen:
            self.dropped += 1  # the oldest falls off unmatched
        queue.append((int(stamp_ns), item))

    def _match(self) -> RgbdPair[C, D] | None:
        best = None
        for ci, (cs, _) in enumerate(self._color):
            for di, (ds, _) in enumerate(self._depth):
                dt = abs(cs - ds)
                if dt <= self.tolerance_ns and (best is None or (cs, -dt) > (best[2], -best[3])):
                    best = (ci, di, cs, dt)
        if best is None:
            return None
        ci, di, cs, _ = best
        color, depth = self._color[ci][1], self._depth[di][1]
        self.dropped += ci + di  # everything older than the pair is unmatched for good
        for _ in range(ci + 1):
            self._color.popleft()
        for _ in range(di + 1):
            self._depth.popleft()
        if cs <= self.last_stamp_ns:  # out of order: never go back in time
            self.dropped += 1
            return None
        self.last_stamp_ns = cs
        return RgbdPair(stamp_ns=cs, color=color, depth=depth)
