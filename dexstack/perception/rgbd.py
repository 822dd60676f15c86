"""RGB-D input plumbing without ROS: pairing color with aligned depth by stamp (image buffers become arrays in
:mod:`dexstack.image_codec`).

``message_filters`` is not in the PyPI ROS 2 wheels, so :class:`StampPairer` does the approximate-time pairing the
perception nodes need: a color and a depth frame pair when their stamps differ by at most ``tolerance_ns``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

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
