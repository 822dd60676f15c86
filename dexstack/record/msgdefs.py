"""Message definitions, type hashes and CDR decoding for recorded topics, from ``rosbags``' typestore. No ROS imports.

The MCAP schema of a channel is the full ``ros2msg`` definition of its type, dependencies appended as rosbag2 does
(``====...`` / ``MSG: pkg/Type`` blocks); the channel and ``metadata.yaml`` carry the type's RIHS01 hash. Types the
typestore does not know (a custom package) are loaded from ``share/<pkg>/msg/<Type>.msg`` under the ament prefixes
and the Python prefix (the PyPI ROS wheels install them under ``<venv>/share``).
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

HEADER_TYPE = "std_msgs/msg/Header"
_STAMP = struct.Struct("<iI")
_STAMP_BE = struct.Struct(">iI")


class UnknownMessageType(LookupError):
    """No definition found for a message type (not in the typestore, no .msg file in the share folders)."""


def normalize_type_name(name: str) -> str:
    """``sensor_msgs/JointState`` or ``sensor_msgs/msg/JointState`` -> ``sensor_msgs/msg/JointState``."""
    parts = name.strip().split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3:
        return name.strip()
    raise ValueError(f"'{name}' is not a ROS 2 message type name (pkg/msg/Type)")


@dataclass(frozen=True)
class MessageSchema:
    """What the recorder stores about a message type."""

    type_name: str  # pkg/msg/Type
    definition: str  # ros2msg text with dependencies (MCAP schema data, encoding "ros2msg")
    type_hash: str  # RIHS01_<sha256 hex>
    has_header: bool  # the first field is std_msgs/Header: its stamp sits at CDR offset 4


def _share_dirs() -> list[Path]:
    dirs = [Path(p) / "share" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(sys.prefix) / "share")
    return dirs


class TypeRegistry:
    """Thread-safe cache of :class:`MessageSchema` per type, plus lenient CDR decoding for export and replay."""

    def __init__(self, store: Stores = Stores.ROS2_KILTED, msg_search_dirs: list[Path] | None = None):
        self.typestore: Typestore = get_typestore(store)
        self._dirs = msg_search_dirs if msg_search_dirs is not None else _share_dirs()
        self._lock = threading.Lock()
        self._schemas: dict[str, MessageSchema] = {}

    def _load_from_share(self, type_name: str, seen: set[str]) -> None:
        if type_name in self.typestore.fielddefs or type_name in seen:
            return
        seen.add(type_name)
        pkg, _, name = type_name.split("/")
        for d in self._dirs:
            path = d / pkg / "msg" / f"{name}.msg"
            if path.is_file():
                types = get_types_from_msg(path.read_text(), type_name)
                for _consts, fields in types.values():  # register dependencies first
                    for _field_name, field_type in fields:
                        for dep in _referenced_types(field_type):
                            if dep != type_name:
                                self._load_from_share(dep, seen)
                self.typestore.register(types)
                return
        raise UnknownMessageType(f"no definition for {type_name}: not in the typestore and no {pkg}/msg/{name}.msg "
                                 f"under {[str(d) for d in self._dirs]}")

    def schema(self, type_name: str) -> MessageSchema:
        type_name = normalize_type_name(type_name)
        with self._lock:
            cached = self._schemas.get(type_name)
            if cached is not None:
                return cached
            if type_name not in self.typestore.fielddefs:
                self._load_from_share(type_name, set())
            definition, _ = self.typestore.generate_msgdef(type_name, ros_version=2)
            type_hash = self.typestore.hash_rihs01(type_name)
            fields = self.typestore.fielddefs[type_name][1]
            has_header = bool(fields) and fields[0][1][1] == HEADER_TYPE
            schema = MessageSchema(type_name, definition, type_hash, has_header)
            self._schemas[type_name] = schema
            return schema

    def decode(self, data: bytes | memoryview, type_name: str) -> object:
        """CDR -> rosbags message object. Lenient about trailing bytes: rclpy/Fast CDR buffers can be longer
        than the message (e.g. with empty float64[] fields), which ``Typestore.deserialize_cdr`` refuses with
        "CDR message size mismatch"; the fields themselves decode the same."""
        type_name = normalize_type_name(type_name)
        self.schema(type_name)
        if len(data) < 4 or bytes(data[:2]) not in (b"\x00\x00", b"\x00\x01"):
            raise ValueError(f"not a CDR payload for {type_name}")
        msgdef = self.typestore.get_msgdef(type_name)
        func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
        message, _ = func(memoryview(data)[4:], 0, msgdef.cls, self.typestore)
        return message

    def encode(self, message: object, type_name: str) -> bytes:
        return bytes(self.typestore.serialize_cdr(message, normalize_type_name(type_name)))

    def message_class(self, type_name: str):
        """rosbags dataclass for ``type_name`` (to build messages without rclpy)."""
        type_name = normalize_type_name(type_name)
        self.schema(type_name)
        return self.typestore.types[type_name]


def _referenced_types(ref) -> list[str]:
    """Message type names referenced by a rosbags field type node."""
    out: list[str] = []
    if isinstance(ref, str):
        if "/" in ref:
            out.append(ref)
    elif isinstance(ref, tuple):
        for item in ref:
            out.extend(_referenced_types(item))
    return out


def header_stamp_ns(data: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR message whose first field is std_msgs/Header; 0 if too short or unset."""
    if len(data) < 12:
        return 0
    sec, nanosec = (_STAMP if data[1] else _STAMP_BE).unpack_from(data, 4)
    if sec < 0:
        return 0
    return sec * 1_000_000_000 + nanosec
