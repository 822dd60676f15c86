"""Intervention and health bookkeeping shared by nodes: counts per reason, last reason, level. No ROS imports."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum


class Level(IntEnum):
    """Same values as diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass
class StatusReport:
    name: str
    level: Level
    message: str
    values: dict[str, str] = field(default_factory=dict)


class ReasonCounter:
    """Thread-safe counts of events by reason (rejections, interventions, drops), plus the latest one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.last_reason = ""

    def add(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1
            self.last_reason = reason

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
