"""Episodes on disk: one rosbag2 directory per episode (``episode_000042/episode_000042_0.mcap`` +
``metadata.yaml``), the episode's metadata, and the store that numbers, recovers and discards them. No ROS imports.

``metadata.yaml`` follows rosbag2's format version 9 (what ``ros2 bag info`` and ``rosbags`` read); the episode's
own metadata (task, operator, robot profile, calibration file content, policy, success flag, ...) is in its
``custom_data`` under ``dexstack.*`` keys, and also in ``dexstack.episode`` Metadata records inside the MCAP file,
so a file recovered after a crash still has it. A directory with an ``.mcap`` but no ``metadata.yaml`` is an
interrupted episode: :meth:`EpisodeStore.recover_interrupted` closes its MCAP (:func:`repair_mcap`) and writes the
missing ``metadata.yaml``. Nothing is ever overwritten: a new episode takes the index after the highest one present.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dexstack.record.mcap_io import McapSummary, repair_mcap, scan_mcap

METADATA_FILE = "metadata.yaml"
EPISODE_RECORD = "dexstack.episode"  # name of the MCAP Metadata records holding EpisodeInfo
CUSTOM_PREFIX = "dexstack."
ROSBAG2_VERSION = 9
ROS_DISTRO = "kilted"
_EPISODE_DIR = re.compile(r"^episode_(\d{6,})$")

STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
STATUS_RECOVERED = "recovered"  # interrupted (crash, SIGKILL, power loss), closed by repair
STATUS_WRITE_ERROR = "write_error"  # kept up to a write failure (disk full, I/O error)


@dataclass
class EpisodeInfo:
    """Episode metadata. Times are ROS/system time in nanoseconds since the epoch."""

    index: int
    task: str = ""
    operator: str = ""
    robot_profile: str = ""
    calibration_path: str = ""
    calibration: str = ""  # content of the calibration file at recording time
    policy: str = ""  # "" for teleoperation / scripted
    success: bool | None = None  # None: not marked
    start_time_ns: int = 0
    end_time_ns: int = 0
    status: str = STATUS_RECORDING
    error: str = ""
    dropped: int = 0  # messages received but not written (writer queue full)

    def to_custom_data(self) -> dict[str, str]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "success":
                value = "unknown" if value is None else str(value).lower()
            out[CUSTOM_PREFIX + f.name] = str(value)
        return out

    @classmethod
    def from_custom_data(cls, data: dict[str, str] | None, index: int = -1) -> EpisodeInfo:
        data = data or {}
        values: dict = {}
        for f in dataclasses.fields(cls):
            raw = data.get(CUSTOM_PREFIX + f.name)
            if raw is None:
                continue
            if f.name == "success":
                values[f.name] = {"true": True, "false": False}.get(raw.lower())
            elif f.name in ("index", "start_time_ns", "end_time_ns", "dropped"):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    pass
            else:
                values[f.name] = raw
        values.setdefault("index", index)
        return cls(**values)


@dataclass
class TopicRecord:
    """A topic as listed in metadata.yaml."""

    name: str
    type_name: str
    type_hash: str
    message_count: int = 0
    offered_qos_profiles: list[dict] = field(default_factory=list)


_QOS_DEFAULTS = {
    "history": "keep_last", "depth": 10, "reliability": "reliable", "durability": "volatile",
    "deadline": {"sec": 0, "nsec": 0}, "lifespan": {"sec": 0, "nsec": 0}, "liveliness": "automatic",
    "liveliness_lease_duration": {"sec": 0, "nsec": 0}, "avoid_ros_namespace_conventions": False,
}


def complete_qos(profile: dict) -> dict:
    """A QoS dict with every key rosbag2 (format 9) readers expect; missing keys take ROS defaults."""
    return {**_QOS_DEFAULTS, **profile}


def episode_dir_name(index: int) -> str:
    return f"episode_{index:06d}"


def mcap_file_name(index: int) -> str:
    return f"{episode_dir_name(index)}_0.mcap"


def rosbag2_metadata(mcap_name: str, summary: McapSummary, topics: list[TopicRecord],
                     custom_data: dict[str, str]) -> dict:
    """The ``rosbag2_bagfile_information`` document (format version 9) for one MCAP file."""
    start = summary.message_start_time if summary.message_count else 0
    duration = (summary.message_end_time - start) if summary.message_count else 0
    return {"rosbag2_bagfile_information": {
        "version": ROSBAG2_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": int(duration)},
        "starting_time": {"nanoseconds_since_epoch": int(start)},
        "message_count": int(summary.message_count),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t.name, "type": t.type_name, "serialization_format": "cdr",
                                "offered_qos_profiles": [complete_qos(q) for q in t.offered_qos_profiles],
                                "type_description_hash": t.type_hash},
             "message_count": int(t.message_count)}
            for t in topics],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [mcap_name],
        "files": [{"path": mcap_name, "starting_time": {"nanoseconds_since_epoch": int(start)},
                   "duration": {"nanoseconds": int(duration)}, "message_count": int(summary.message_count)}],
        "custom_data": dict(custom_data),
        "ros_distro": ROS_DISTRO,
    }}


def write_metadata_yaml(directory: Path, document: dict) -> Path:
    """Write ``metadata.yaml`` atomically (temporary file + rename)."""
    path = directory / METADATA_FILE
    tmp = directory / (METADATA_FILE + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(document, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_metadata_yaml(directory: Path) -> dict:
    return yaml.safe_load((Path(directory) / METADATA_FILE).read_text())["rosbag2_bagfile_information"]


def topics_from_summary(summary: McapSummary) -> list[TopicRecord]:
    """Topic list for metadata.yaml from the channels of an MCAP file (QoS and hash from channel metadata)."""
    out = []
    for cid, channel in summary.channels.items():
        schema = summary.schemas.get(channel.schema_id)
        qos_text = channel.metadata.get("offered_qos_profiles", "")
        try:
            qos = yaml.safe_load(qos_text) if qos_text else []
        except yaml.YAMLError:
            qos = []
        out.append(TopicRecord(channel.topic, schema.name if schema is not None else "",
                               channel.metadata.get("topic_type_hash", ""),
                               summary.channel_message_counts.get(cid, 0), qos if isinstance(qos, list) else []))
    return out


@dataclass
class EpisodeRef:
    """An episode directory found on disk."""

    index: int
    path: Path
    complete: bool  # has metadata.yaml

    @property
    def mcap_path(self) -> Path:
        return self.path / mcap_file_name(self.index)


@dataclass
class RecoveryReport:
    path: Path
    message_count: int
    dropped_bytes: int
    reason: str


def recover_episode(directory: Path) -> RecoveryReport:
    """Close the MCAP of an interrupted episode and write its ``metadata.yaml`` (status ``recovered``)."""
    directory = Path(directory)
    match = _EPISODE_DIR.match(directory.name)
    index = int(match.group(1)) if match else -1
    mcaps = sorted(directory.glob("*.mcap"))
    if not mcaps:
        raise FileNotFoundError(f"{directory}: no .mcap file to recover")
    result = repair_mcap(mcaps[0])
    summary = result.summary
    info = EpisodeInfo.from_custom_data(summary.merged_metadata(EPISODE_RECORD), index)
    if info.status in (STATUS_RECORDING, STATUS_COMPLETE):
        info.status = STATUS_RECOVERED
    if not info.end_time_ns and summary.message_count:
        info.end_time_ns = summary.message_end_time
    document = rosbag2_metadata(mcaps[0].name, summary, topics_from_summary(summary), info.to_custom_data())
    write_metadata_yaml(directory, document)
    return RecoveryReport(directory, summary.message_count, result.dropped_bytes, result.reason)


def load_episode_info(directory: Path) -> EpisodeInfo:
    """Episode metadata of a closed episode (from metadata.yaml) or an open/interrupted one (from its MCAP)."""
    directory = Path(directory)
    match = _EPISODE_DIR.match(directory.name)
    index = int(match.group(1)) if match else -1
    if (directory / METADATA_FILE).is_file():
        return EpisodeInfo.from_custom_data(read_metadata_yaml(directory).get("custom_data"), index)
    mcaps = sorted(directory.glob("*.mcap"))
    summary = scan_mcap(mcaps[0]).summary if mcaps else McapSummary()
    return EpisodeInfo.from_custom_data(summary.merged_metadata(EPISODE_RECORD), index)


def update_episode_info(directory: Path, **changes) -> EpisodeInfo:
    """Change fields of a closed episode's metadata (e.g. ``success=True`` after the fact); rewrites metadata.yaml."""
    directory = Path(directory)
    document = yaml.safe_load((directory / METADATA_FILE).read_text())
    info_doc = document["rosbag2_bagfile_information"]
    info = EpisodeInfo.from_custom_data(info_doc.get("custom_data"), -1)
    info = dataclasses.replace(info, **changes)
    info_doc["custom_data"] = {**(info_doc.get("custom_data") or {}), **info.to_custom_data()}
    write_metadata_yaml(directory, document)
    return info


class EpisodeStore:
    """The episode directories under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def episodes(self) -> list[EpisodeRef]:
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            match = _EPISODE_DIR.match(path.name)
            if match and path.is_dir():
                out.append(EpisodeRef(int(match.group(1)), path, (path / METADATA_FILE).is_file()))
        return sorted(out, key=lambda e: e.index)

    def next_index(self) -> int:
        eps = self.episodes()
        return eps[-1].index + 1 if eps else 0

    def interrupted(self) -> list[EpisodeRef]:
        return [e for e in self.episodes() if not e.complete]

    def recover_interrupted(self) -> list[RecoveryReport]:
        """Repair every interrupted episode (an empty directory left by a crash before the first write is
        removed). Episodes that cannot be repaired are left untouched and reported with message_count -1."""
        reports = []
        for ref in self.interrupted():
            if not any(ref.path.iterdir()):
                ref.path.rmdir()
                continue
            try:
                reports.append(recover_episode(ref.path))
            except (OSError, ValueError) as exc:
                reports.append(RecoveryReport(ref.path, -1, 0, f"not recoverable: {exc}"))
        return reports

    def create(self) -> tuple[int, Path]:
        """Make the directory of a new episode with the next free index (never an existing one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        index = self.next_index()
        while True:
            path = self.root / episode_dir_name(index)
            try:
                path.mkdir()
                return index, path
            except FileExistsError:
                index += 1

    def discard(self, index: int) -> Path:
        path = self.root / episode_dir_name(index)
        if not path.is_dir():
            raise FileNotFoundError(f"no episode {index} under {self.root}")
        shutil.rmtree(path)
        return path
