"""The recording session: episode control (start, stop/save, discard, mark success) and a writer thread that puts
serialized messages into the current episode's MCAP file. No ROS imports: the node hands it CDR bytes.

Threading: :meth:`RecordingSession.submit` (the subscription callbacks) only appends to a queue bounded in bytes
(``max_queue_bytes``; a message that does not fit is dropped and counted, per topic); one writer thread drains it
in order, writes each batch with plain ``write(2)`` calls (so everything written survives a SIGKILL of the process)
and fsyncs every ``fsync_period_s``. Control calls are ordered with the messages: ``stop`` returns once every
message submitted before it is on disk and the file is closed.

A write error (disk full: ENOSPC, I/O error) ends the episode where it happened: the file is closed after its
last complete message (or left for :func:`repair_mcap` if even that fails), ``metadata.yaml`` says
``status: write_error`` with the reason, and :attr:`SessionStatus.error` reports it until the next start.
"""

from __future__ import annotations

import dataclasses
import errno
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import yaml

from dexstack.record.episode import (
    EPISODE_RECORD,
    STATUS_COMPLETE,
    STATUS_WRITE_ERROR,
    EpisodeInfo,
    EpisodeStore,
    TopicRecord,
    complete_qos,
    mcap_file_name,
    rosbag2_metadata,
    update_episode_info,
    write_metadata_yaml,
)
from dexstack.record.mcap_io import McapStreamWriter, McapWriteError
from dexstack.record.msgdefs import TypeRegistry, header_stamp_ns, normalize_type_name

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


@dataclass(frozen=True)
class TopicSpec:
    """A topic the node subscribed to: its type and the QoS profiles its publishers offer (rosbag2 v9 dicts)."""

    topic: str
    type_name: str
    offered_qos_profiles: tuple[dict, ...] = ()
    latched: bool = False  # transient local (robot description, static TF): its last message opens each episode


@dataclass
class SessionConfig:
    output_dir: Path
    max_queue_bytes: int = 512 * 1024 * 1024  # writer backlog before messages are dropped (bytes)
    fsync_period_s: float = 1.0  # fsync the episode file this often (power-loss safety)
    compress_images: bool = False  # sensor_msgs/Image -> <topic>/compressed (JPEG for 8-bit, PNG for 16-bit)
    jpeg_quality: int = 90


@dataclass
class SessionStatus:
    """Snapshot for diagnostics and the terminal UI."""

    state: str  # idle | recording | error
    episode_index: int  # current episode, or -1
    episode_path: str
    elapsed_s: float  # since the current episode started
    messages: int  # written in the current (or last) episode
    dropped: int  # not written in the current (or last) episode (queue full, unknown type)
    bytes_written: int
    queue_bytes: int
    topic_counts: dict[str, int]
    topic_dropped: dict[str, int]
    last_episode_index: int
    last_episode_path: str
    error: str
    episodes_saved: int  # by this session


@dataclass
class _Episode:
    info: EpisodeInfo
    path: Path
    file: BinaryIO
    writer: McapStreamWriter
    started_monotonic: float
    channels: dict[str, int] = field(default_factory=dict)  # topic -> channel id
    schema_ids: dict[str, int] = field(default_factory=dict)  # type -> schema id
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    last_sync: float = 0.0
    closed: bool = False
    error: str = ""


class RecordingSession:
    """Episodes under ``config.output_dir``; see the module docstring. ``opener(path)`` opens the MCAP file for
    writing (default: unbuffered, exclusive create) and is where tests inject write errors."""

    def __init__(self, config: SessionConfig, registry: TypeRegistry | None = None,
                 opener: Callable[[Path], BinaryIO] | None = None,
                 on_event: Callable[[str, str], None] | None = None):
        self.config = config
        self.store = EpisodeStore(config.output_dir)
        self.registry = registry or TypeRegistry()
        self._opener = opener or (lambda path: open(path, "xb", buffering=0))  # noqa: SIM115
        self._on_event = on_event or (lambda level, text: None)
        self._lock = threading.Lock()
        self._topics: dict[str, TopicSpec] = {}
        self._latched: dict[str, bytes] = {}  # last message of each latched topic
        self._episode: _Episode | None = None  # the one being recorded (writer side may still be closing it)
        self._recording = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queue_bytes = 0
        self._last_log_time = 0
        self._last: _Episode | None = None
        self._last_saved: tuple[int, Path] | None = None
        self._error = ""
        self._saved = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ topics
    def set_topic(self, spec: TopicSpec) -> None:
        """Declare (or update) a topic's type and offered QoS; messages of undeclared topics are dropped."""
        spec = dataclasses.replace(spec, type_name=normalize_type_name(spec.type_name),
                                   offered_qos_profiles=tuple(complete_qos(q) for q in spec.offered_qos_profiles))
        self.registry.schema(spec.type_name)  # fail here, not in the writer thread, for an unknown type
        with self._lock:
            self._topics[spec.topic] = spec

    # ------------------------------------------------------------------ input
    def submit(self, topic: str, data: bytes, log_time_ns: int | None = None) -> bool:
        """Queue one serialized message received at ``log_time_ns`` (default: now). False if not recording or
        dropped because the writer is behind by more than ``max_queue_bytes``."""
        now = time.time_ns() if log_time_ns is None else log_time_ns
        with self._lock:
            episode = self._episode
            spec = self._topics.get(topic)
            if spec is not None and spec.latched:
                self._latched[topic] = data
            if not self._recording or episode is None:
                return False
            if self._queue_bytes + len(data) > self.config.max_queue_bytes or topic not in self._topics:
                episode.dropped[topic] = episode.dropped.get(topic, 0) + 1
                return False
            now = max(now, self._last_log_time)  # log times never go backwards within a file
            self._last_log_time = now
            self._queue_bytes += len(data)
        self._queue.put(("msg", episode, topic, data, now))
        return True

    # ------------------------------------------------------------------ control
    def start(self, **info_fields) -> tuple[bool, str, int]:
        """Open a new episode (next free index). ``info_fields``: :class:`EpisodeInfo` fields (task, operator,
        robot_profile, calibration_path, calibration, policy). Returns (ok, message, index)."""
        with self._lock:
            if self._recording and self._episode is not None:
                return False, f"already recording episode {self._episode.info.index}", self._episode.info.index
        try:
            index, path = self.store.create()
            file = self._opener(path / mcap_file_name(index))
            writer = McapStreamWriter(file)
            info = EpisodeInfo(index=index, start_time_ns=time.time_ns(), **info_fields)
            writer.add_metadata(EPISODE_RECORD, info.to_custom_data())
            writer.flush()
        except OSError as exc:
            message = f"cannot start an episode under {self.config.output_dir}: {exc}"
            with self._lock:
                self._error = message
            self._on_event("error", message)
            return False, message, -1
        episode = _Episode(info=info, path=path, file=file, writer=writer, started_monotonic=time.monotonic(),
                           last_sync=time.monotonic())
        with self._lock:
            self._episode = episode
            self._last = episode
            self._recording = True
            self._error = ""
            self._last_log_time = 0  # log times never go backwards within one file
            now = time.time_ns()
            if self._latched:
                self._last_log_time = now
            for topic, data in self._latched.items():  # what a late joiner would get: the episode has it too
                self._queue_bytes += len(data)
                self._queue.put(("msg", episode, topic, data, now))
        self._on_event("info", f"recording episode {index} -> {path}")
        return True, f"recording episode {index} -> {path}", index

    def _control(self, kind: str, *args) -> tuple:
        done = threading.Event()
        result: list = []
        self._queue.put((kind, done, result, *args))
        done.wait()
        return result[0]

    def stop(self) -> tuple[bool, str, str]:
        """Save the current episode: every message submitted so far is written, the file closed and
        ``metadata.yaml`` written. Returns (ok, message, episode path)."""
        with self._lock:
            episode = self._episode if self._recording else None
            self._recording = False
        if episode is None:
            last = self._last
            if last is not None and last.error:
                return False, f"episode {last.info.index} already ended by a write error: {last.error}", str(last.path)
            return False, "not recording", ""
        return self._control("stop", episode)

    def discard(self) -> tuple[bool, str]:
        """Re-record: drop the current episode (directory deleted); when idle, delete the episode this session
        saved last. Returns (ok, message)."""
        with self._lock:
            episode = self._episode if self._recording else None
            self._recording = False
            last_saved = self._last_saved
        if episode is not None:
            return self._control("discard", episode)
        if last_saved is None:
            return False, "nothing to discard (no episode recorded in this session)"
        index, _ = last_saved
        try:
            path = self.store.discard(index)
        except OSError as exc:
            return False, f"cannot discard episode {index}: {exc}"
        with self._lock:
            self._last_saved = None
            self._saved = max(0, self._saved - 1)
        self._on_event("info", f"discarded saved episode {index} ({path})")
        return True, f"discarded saved episode {index}"

    def set_success(self, success: bool) -> tuple[bool, str]:
        """Mark the current episode (or, when idle, the last one saved by this session) a success or failure."""
        with self._lock:
            episode = self._episode if self._recording else None
            last_saved = self._last_saved
        if episode is not None:
            return self._control("success", episode, success)
        if last_saved is None:
            return False, "no episode to mark (none recording, none saved in this session)"
        index, path = last_saved
        try:
            update_episode_info(path, success=success)
        except (OSError, yaml.YAMLError) as exc:
            return False, f"cannot update episode {index}: {exc}"
        return True, f"episode {index} marked {'success' if success else 'failure'}"

    # ------------------------------------------------------------------ status
    def status(self) -> SessionStatus:
        with self._lock:
            episode = self._episode if self._recording else None
            shown = episode or self._last
            last_saved = self._last_saved
            state = "recording" if episode is not None else ("error" if self._error else "idle")
            return SessionStatus(
                state=state,
                episode_index=episode.info.index if episode else -1,
                episode_path=str(episode.path) if episode else "",
                elapsed_s=time.monotonic() - episode.started_monotonic if episode else 0.0,
                messages=sum(shown.counts.values()) if shown else 0,
                dropped=sum(shown.dropped.values()) if shown else 0,
                bytes_written=shown.writer.good_bytes if shown else 0,
                queue_bytes=self._queue_bytes,
                topic_counts=dict(shown.counts) if shown else {},
                topic_dropped=dict(shown.dropped) if shown else {},
                last_episode_index=last_saved[0] if last_saved else -1,
                last_episode_path=str(last_saved[1]) if last_saved else "",
                error=self._error,
                episodes_saved=self._saved,
            )

    def close(self) -> None:
        """Save an episode in progress, then stop the writer thread."""
        if self._recording:
            self.stop()
        self._stop.set()
        self._queue.put(("quit",))
        self._thread.join(timeout=10.0)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                self._maybe_sync()
                continue
            dirty: set[int] = set()
            while item is not None:
                if item[0] == "quit":
                    return
                self._handle(item, dirty)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            for episode in list(self._open_episodes(dirty)):
                self._flush(episode)
            self._maybe_sync()

    def _open_episodes(self, ids: set[int]):
        for episode in (self._episode, self._last):
            if episode is not None and id(episode) in ids and not episode.closed:
                ids.discard(id(episode))
                yield episode

    def _handle(self, item: tuple, dirty: set[int]) -> None:
        kind = item[0]
        if kind == "msg":
            _, episode, topic, data, log_time = item
            with self._lock:
                self._queue_bytes -= len(data)
            if episode.closed:
                return
            self._write_message(episode, topic, data, log_time)
            dirty.add(id(episode))
            return
        done, result = item[1], item[2]
        for episode in list(self._open_episodes(dirty)):  # messages queued before a control call go first
            self._flush(episode)
        dirty.clear()
        try:
            if kind == "stop":
                result.append(self._finish(item[3]))
            elif kind == "discard":
                result.append(self._discard(item[3]))
            elif kind == "success":
                result.append(self._mark(item[3], item[4]))
        except Exception as exc:  # noqa: BLE001  (never leave a service call hanging)
            result.append((False, f"{kind} failed: {exc}") if kind != "stop" else (False, f"stop failed: {exc}", ""))
        finally:
            done.set()

    def _write_message(self, episode: _Episode, topic: str, data: bytes, log_time: int) -> None:
        spec = self._topics.get(topic)
        if spec is None:
            with self._lock:
                episode.dropped[topic] = episode.dropped.get(topic, 0) + 1
            return
        type_name, out_topic = spec.type_name, topic
        schema = self.registry.schema(type_name)
        stamp = header_stamp_ns(data) if schema.has_header else 0
        if self.config.compress_images and type_name == IMAGE_TYPE:
            try:
                from dexstack.record.images import compress_image

                data = compress_image(self.registry, data, self.config.jpeg_quality)
                type_name, out_topic = COMPRESSED_TYPE, topic.rstrip("/") + "/compressed"
            except Exception as exc:  # noqa: BLE001  (an odd encoding: keep the raw image)
                self._on_event("warn", f"cannot compress {topic}, kept raw: {exc}")
        try:
            channel_id = episode.channels.get(out_topic)
            if channel_id is None:
                channel_id = self._add_channel(episode, out_topic, type_name, spec.offered_qos_profiles)
            episode.writer.add_message(channel_id, log_time, stamp or log_time, data)
        except McapWriteError as exc:
            self._write_failed(episode, exc)
            return


    def _add_channel(self, episode: _Episode, topic: str, type_name: str, qos: tuple[dict, ...]) -> int:
        schema = self.registry.schema(type_name)
        schema_id = episode.schema_ids.get(type_name)
        if schema_id is None:
            schema_id = episode.writer.add_schema(type_name, "ros2msg", schema.definition.encode())
            episode.schema_ids[type_name] = schema_id
        qos_text = yaml.safe_dump(list(qos), sort_keys=False).strip() if qos else ""
        channel_id = episode.writer.add_channel(topic, "cdr", schema_id, {
            "offered_qos_profiles": qos_text, "topic_type_hash": schema.type_hash})
        episode.channels[topic] = channel_id
        episode.topics[topic] = TopicRecord(topic, type_name, schema.type_hash, 0, list(qos))
        return channel_id

    def _flush(self, episode: _Episode) -> None:
        try:
            episode.writer.flush()
        except McapWriteError as exc:
            self._write_failed(episode, exc)
        self._sync_counts(episode)

    def _sync_counts(self, episode: _Episode) -> None:
        """Messages per topic that are on disk (the writer counts a record once it is completely written)."""
        written = episode.writer.summary.channel_message_counts
        counts = {topic: written.get(cid, 0) for topic, cid in episode.channels.items()}
        for topic, n in counts.items():
            episode.topics[topic].message_count = n
        with self._lock:
            episode.counts = counts

    def _maybe_sync(self) -> None:
        episode = self._episode
        if episode is None or episode.closed:
            return
        now = time.monotonic()
        if now - episode.last_sync >= self.config.fsync_period_s:
            episode.last_sync = now
            episode.writer.sync()

    def _write_failed(self, episode: _Episode, exc: OSError) -> None:
        """End the episode at a write error, keeping what was written."""
        reason = "disk full (ENOSPC)" if exc.errno == errno.ENOSPC else f"write error ({exc})"
        message = f"episode {episode.info.index}: {reason}; kept up to the failure in {episode.path}"
        episode.error = message
        with self._lock:
            self._error = message
            if self._episode is episode:
                self._recording = False
        self._on_event("error", message)
        self._close_files(episode, STATUS_WRITE_ERROR, message)

    def _close_files(self, episode: _Episode, status: str, error: str = "") -> tuple[bool, str]:
        """Finish the MCAP and write metadata.yaml. Returns (ok, problem)."""
        if episode.closed:
            return not episode.error, episode.error
        episode.closed = True
        episode.info.end_time_ns = time.time_ns()
        episode.info.status = status
        episode.info.error = error
        episode.info.dropped = sum(episode.dropped.values())
        problems = []
        if episode.writer.error is None:
            try:
                episode.writer.add_metadata(EPISODE_RECORD, episode.info.to_custom_data())
            except McapWriteError:
                pass
        try:
            episode.writer.finish()
        except (McapWriteError, OSError) as exc:
            problems.append(f"MCAP not closed ({exc}); run `repair` when there is space")
        self._sync_counts(episode)
        try:
            episode.file.close()
        except OSError:
            pass
        if not problems:
            summary = episode.writer.summary
            topics = list(episode.topics.values())
            document = rosbag2_metadata(mcap_file_name(episode.info.index), summary, topics,
                                        episode.info.to_custom_data())
            try:
                write_metadata_yaml(episode.path, document)
            except OSError as exc:
                problems.append(f"metadata.yaml not written ({exc})")
        return not problems and not error, "; ".join(problems)

    def _finish(self, episode: _Episode) -> tuple[bool, str, str]:
        if episode.closed:  # already ended by a write error
            return False, episode.error, str(episode.path)
        ok, problem = self._close_files(episode, STATUS_COMPLETE)
        n = sum(episode.counts.values())
        dropped = sum(episode.dropped.values())
        if not ok:
            message = f"episode {episode.info.index}: {problem}"
            with self._lock:
                self._error = message
            self._on_event("error", message)
            return False, message, str(episode.path)
        with self._lock:
            self._last_saved = (episode.info.index, episode.path)
            self._saved += 1
        message = f"saved episode {episode.info.index}: {n} messages, {dropped} dropped -> {episode.path}"
        self._on_event("info", message)
        return True, message, str(episode.path)

    def _discard(self, episode: _Episode) -> tuple[bool, str]:
        episode.closed = True
        try:
            episode.file.close()
        except OSError:
            pass
        try:
            self.store.discard(episode.info.index)
        except OSError as exc:
            return False, f"cannot delete episode {episode.info.index}: {exc}"
        with self._lock:
            if self._last is episode:
                self._last = None
        self._on_event("info", f"discarded episode {episode.info.index}")
        return True, f"discarded episode {episode.info.index} (re-record: the next start reuses index " \
                     f"{episode.info.index})"

    def _mark(self, episode: _Episode, success: bool) -> tuple[bool, str]:
        if episode.closed:
            return False, f"episode {episode.info.index} is closed"
        episode.info.success = success
        try:
            episode.writer.add_metadata(EPISODE_RECORD, {"dexstack.success": str(success).lower()})
            episode.writer.flush()
        except McapWriteError as exc:
            self._write_failed(episode, exc)
            return False, episode.error
        return True, f"episode {episode.info.index} marked {'success' if success else 'failure'}"
