"""Replay an episode's commands with their original timing. No ROS imports: publishing is a callback.

The replayed topics are the command *inputs* of the stack (``/dexstack/arm/command``, ``/dexstack/hand/command``,
before the safety gate), so a replay goes through the safety monitor like the original. Commands carry no stamps
of their own, so their timing is their arrival at the recorder (MCAP log time). ``dexstack-record replay`` (in
``dexstack/cli/record.py``) publishes them with rclpy; :func:`play` is the timing loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry

REPLAY_TOPICS = ("/dexstack/arm/command", "/dexstack/hand/command")
STATE_TOPIC = "/joint_states"


@dataclass(frozen=True)
class ReplayItem:
    offset_s: float  # from the first replayed command
    topic: str
    type_name: str
    data: bytes  # CDR as recorded


@dataclass
class ReplayPlan:
    items: list[ReplayItem]
    joint_names: list[str]
    initial_positions: np.ndarray  # measured at the first command (rad), joint_names order
    final_positions: np.ndarray  # last measured state of the episode (rad)

    @property
    def duration_s(self) -> float:
        return self.items[-1].offset_s if self.items else 0.0

    def initial(self, names: Iterable[str]) -> np.ndarray:
        index = {n: i for i, n in enumerate(self.joint_names)}
        return np.array([self.initial_positions[index[n]] for n in names])

    def final(self, names: Iterable[str]) -> np.ndarray:
        index = {n: i for i, n in enumerate(self.joint_names)}
        return np.array([self.final_positions[index[n]] for n in names])


def _mcap(episode_dir: Path) -> Path:
    mcaps = sorted(Path(episode_dir).glob("*.mcap"))
    if not mcaps:
        raise FileNotFoundError(f"{episode_dir}: no .mcap file")
    return mcaps[0]


def load_replay(episode_dir: str | Path, topics: Iterable[str] = REPLAY_TOPICS,
                registry: TypeRegistry | None = None) -> ReplayPlan:
    """The commands of an episode in arrival order, and the measured joints where they start and at the end."""
    registry = registry or TypeRegistry()
    topics = set(topics)
    raw: list[tuple[int, str, str, bytes]] = []
    states: list[tuple[int, list[str], list[float]]] = []
    for m in iter_messages(_mcap(Path(episode_dir)), topics | {STATE_TOPIC}):
        if m.topic == STATE_TOPIC:
            msg = registry.decode(m.data, m.type_name)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec or m.log_time_ns
            states.append((stamp, list(msg.name), [float(v) for v in msg.position]))
        else:
            raw.append((m.log_time_ns, m.topic, m.type_name, m.data))
    if not raw:
        raise ValueError(f"{episode_dir}: no messages on {sorted(topics)} to replay")
    if not states:
        raise ValueError(f"{episode_dir}: no {STATE_TOPIC} recorded")
    raw.sort(key=lambda r: r[0])
    states.sort(key=lambda s: s[0])  # by header stamp
    start = raw[0][0]
    items = [ReplayItem((t - start) * 1e-9, topic, type_name, data) for t, topic, type_name, data in raw]
    names = states[0][1]
    before = [s for s in states if s[0] <= start] or states[:1]

    def ordered(state) -> np.ndarray:
        values = dict(zip(state[1], state[2]))
        return np.array([values.get(n, np.nan) for n in names])

    return ReplayPlan(items, names, ordered(before[-1]), ordered(states[-1]))


def play(items: list[ReplayItem], publish: Callable[[ReplayItem], None], speed: float = 1.0,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
         should_stop: Callable[[], bool] = lambda: False) -> int:
    """Publish ``items`` at ``offset_s / speed`` after the start (a late publish never shifts the rest).
    Returns how many were published."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    start = clock()
    n = 0
    for item in items:
        if should_stop():
            break
        wait = start + item.offset_s / speed - clock()
        if wait > 0:
            sleep(wait)
        publish(item)
        n += 1
    return n
