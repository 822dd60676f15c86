"""A recorded episode (rosbag2 MCAP from ``dexstack/record``) drawn into a Rerun recording, in log-time order.

Compressed images (``<topic>/compressed``) are decoded to the raw topic's role; calibration and robot profile come
from the episode's metadata when the caller does not name them.
"""

from __future__ import annotations

from pathlib import Path

from dexstack.record.episode import load_episode_info
from dexstack.record.images import COMPRESSED_TYPE, decode_image
from dexstack.record.mcap_io import iter_messages
from dexstack.record.msgdefs import TypeRegistry, UnknownMessageType
from dexstack.viz.scene import SceneLogger


class _DecodedImage:
    """A CompressedImage presented as an Image (``image_array`` reads height/width/step/encoding/data)."""

    def __init__(self, header, pixels, encoding: str):
        self.header, self.encoding, self.is_bigendian = header, encoding, 0
        self.height, self.width = pixels.shape[:2]
        self.step = pixels.strides[0]
        self.data = pixels.reshape(-1).view("uint8")


def episode_mcap(episode_dir: str | Path) -> Path:
    directory = Path(episode_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{episode_dir}: no such episode directory")
    mcaps = sorted(directory.glob("*.mcap"))
    if not mcaps:
        raise FileNotFoundError(f"{episode_dir}: no .mcap file (is it an episode directory?)")
    return mcaps[0]


def episode_profile(episode_dir: str | Path) -> tuple[str, str]:
    """(robot_profile, calibration text) stored with the episode ('' where not recorded)."""
    try:
        info = load_episode_info(Path(episode_dir))
    except (OSError, ValueError, KeyError):
        return "", ""
    return info.robot_profile or "", getattr(info, "calibration", "") or ""


def log_episode(episode_dir: str | Path, scene: SceneLogger, registry: TypeRegistry | None = None) -> dict[str, int]:
    """Draw every message of the episode that the scene knows; returns messages drawn per topic."""
    registry = registry or TypeRegistry()
    wanted = set(scene.topic_names)
    wanted |= {f"{t}/compressed" for t in (scene.topics.color, scene.topics.depth)}
    for m in iter_messages(episode_mcap(episode_dir), wanted):
        try:
            if m.type_name == COMPRESSED_TYPE:
                pixels, encoding = decode_image(registry, m.type_name, m.data)
                msg = _DecodedImage(registry.decode(m.data, m.type_name).header, pixels, encoding)
                topic = m.topic.removesuffix("/compressed")
            else:
                msg, topic = registry.decode(m.data, m.type_name), m.topic
        except (UnknownMessageType, ValueError):
            continue  # a topic this build cannot decode: skip it, draw the rest
        scene.handle(topic, msg, m.log_time_ns)
    scene.rec.flush()
    return dict(scene.drawn)
