"""What a recorded demo episode holds for conversion: the perceived object poses and hand keypoints over time
(perception outputs, as a real demo has them) and, for scoring only, the sim's ground truth. No rclpy: messages
are decoded from the MCAP with the recorder's own type registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dexstack.perception.pose_keeper import STALE_POSITION_STD_M
from dexstack.record.episode import load_episode_info
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry

OBJECT_POSE_COV = "/dexstack/object_pose_with_covariance"
OBJECT_POSE = "/dexstack/object_pose"
HAND_KEYPOINTS = "/dexstack/hand_keypoints"
OBJECT_GT = "/dexstack/sim/object_pose_gt"  # evaluation only: never used by the conversion


class DemoError(ValueError):
    """A demo that cannot become a reference; the message says why."""


@dataclass
class DemoTracks:
    """Time series of one demo (seconds from the first perceived object sample)."""

    episode: str
    t0_ns: int
    object_t_s: np.ndarray  # (N,)
    object_pose: np.ndarray  # (N, 7) xyz + quat xyzw, base frame
    object_fresh: np.ndarray  # (N,) bool: measured (False: a kept/predicted pose)
    hand_t_s: np.ndarray  # (M,)
    hand_keypoints: np.ndarray  # (M, 21, 3) base frame; frames without a hand are left out
    gt_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_pose: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    info: dict = field(default_factory=dict)


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _pose7(pose) -> list[float]:
    p, o = pose.position, pose.orientation
    return [p.x, p.y, p.z, o.x, o.y, o.z, o.w]


def read_demo(episode_dir: str | Path) -> DemoTracks:
    """Read a recorder episode directory (``recordings/episode_000012``). :class:`DemoError` if it is not one."""
    directory = Path(episode_dir)
    mcaps = sorted(directory.glob("*.mcap")) if directory.is_dir() else []
    if not mcaps:
        raise DemoError(f"{directory}: not an episode directory (no .mcap file)")
    registry = TypeRegistry()
    obj_cov, obj_plain, hand, gt = [], [], [], []
    try:
        for m in iter_messages(mcaps[0], {OBJECT_POSE_COV, OBJECT_POSE, HAND_KEYPOINTS, OBJECT_GT}):
            msg = registry.decode(m.data, m.type_name)
            t = _stamp_ns(msg.header)
            if m.topic == OBJECT_POSE_COV:
                c = msg.pose.covariance
                fresh = max(float(c[0]), float(c[7]), float(c[14])) < STALE_POSITION_STD_M ** 2
                obj_cov.append((t, _pose7(msg.pose.pose), fresh))
            elif m.topic == OBJECT_POSE:
                obj_plain.append((t, _pose7(msg.pose), True))
            elif m.topic == OBJECT_GT:
                gt.append((t, _pose7(msg.pose)))
            elif len(msg.poses) == 21:
                hand.append((t, [[p.position.x, p.position.y, p.position.z] for p in msg.poses]))
    except Exception as exc:  # noqa: BLE001 (a damaged file is a refused demo, with the reader's reason)
        if isinstance(exc, DemoError):
            raise
        raise DemoError(f"{directory}: cannot read {mcaps[0].name}: {exc}") from None
    obj = obj_cov or obj_plain  # the covariance topic tells measured from predicted poses
    if not obj:
        raise DemoError(f"{directory}: the object was never seen (no {OBJECT_POSE_COV} or {OBJECT_POSE} messages)")
    obj.sort(key=lambda r: r[0])
    t0 = obj[0][0]
    hand.sort(key=lambda r: r[0])
    gt.sort(key=lambda r: r[0])
    try:
        info = load_episode_info(directory).__dict__
    except Exception:  # noqa: BLE001 (provenance only)
        info = {}
    return DemoTracks(
        episode=str(directory), t0_ns=t0,
        object_t_s=np.array([(r[0] - t0) * 1e-9 for r in obj]), object_pose=np.array([r[1] for r in obj]),
        object_fresh=np.array([r[2] for r in obj], dtype=bool),
        hand_t_s=np.array([(r[0] - t0) * 1e-9 for r in hand]),
        hand_keypoints=np.array([r[1] for r in hand]).reshape(-1, 21, 3),
        gt_t_s=np.array([(r[0] - t0) * 1e-9 for r in gt]), gt_pose=np.array([r[1] for r in gt]).reshape(-1, 7),
        info={k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))})
