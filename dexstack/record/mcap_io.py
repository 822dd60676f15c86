"""Crash-safe MCAP: an unchunked writer that hands every record to the OS as it goes, and a repair that closes a
truncated file. No ROS imports.

Why not the ``mcap`` (or ``rosbags``) writer as is: both keep up to a 1 MiB chunk in memory and write the summary
only at ``finish()``, so a SIGKILL loses the chunk in memory and leaves a file without footer. Here messages are
written as top-level Message records (the MCAP spec allows unchunked data sections; readers fall back to a linear
scan), ``flush()`` writes what is pending with plain ``write(2)`` calls (no user-space buffer survives it), and
:func:`repair_mcap` truncates a file to its last complete record and appends DataEnd, summary and footer in place
(no copy). Record serialisation for everything but messages reuses ``mcap.records``.

Times are integer nanoseconds (``log_time``: when the recorder received the message; ``publish_time``: the
message's own header stamp where it has one).
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mcap.data_stream import ReadDataStream, RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Channel,
    DataEnd,
    Footer,
    Header,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)

MAGIC = b"\x89MCAP0\r\n"
PROFILE = "ros2"
LIBRARY = "dexstack-recorder"
_MESSAGE_HEADER = struct.Struct("<BQHIQQ")  # opcode, record length, channel id, sequence, log time, publish time
_RECORD_PREFIX = struct.Struct("<BQ")
_VALID_OPCODES = {int(op) for op in Opcode}
_MAX_RECORD_BYTES = 1 << 32  # anything longer is garbage after a crash, not a record


class McapWriteError(OSError):
    """Writing the MCAP file failed (disk full, I/O error). ``errno`` is the OS error number."""


@dataclass
class McapSummary:
    """What a (possibly truncated) MCAP file holds: schemas, channels, message counts and times (ns)."""

    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    channel_message_counts: dict[int, int] = field(default_factory=dict)
    message_count: int = 0
    message_start_time: int = 0  # log time of the earliest message (ns)
    message_end_time: int = 0  # log time of the latest message (ns)
    metadata: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # in file order
    metadata_indexes: list[MetadataIndex] = field(default_factory=list)
    chunk_count: int = 0

    def add_message(self, channel_id: int, log_time: int) -> None:
        if self.message_count == 0:
            self.message_start_time = self.message_end_time = log_time
        else:
            self.message_start_time = min(self.message_start_time, log_time)
            self.message_end_time = max(self.message_end_time, log_time)
        self.message_count += 1
        self.channel_message_counts[channel_id] = self.channel_message_counts.get(channel_id, 0) + 1

    def topic_counts(self) -> dict[str, int]:
        """Messages per topic name."""
        out: dict[str, int] = {}
        for cid, channel in self.channels.items():
            out[channel.topic] = out.get(channel.topic, 0) + self.channel_message_counts.get(cid, 0)
        return out

    def merged_metadata(self, name: str) -> dict[str, str]:
        """All Metadata records called ``name`` merged in file order (later keys win)."""
        merged: dict[str, str] = {}
        for record_name, values in self.metadata:
            if record_name == name:
                merged.update(values)
        return merged


def _record(write) -> bytes:
    builder = RecordBuilder()
    write(builder)
    return builder.end()


def summary_bytes(summary: McapSummary, summary_start: int) -> bytes:
    """DataEnd is not included: the summary section, footer and closing magic for a data section ending at
    ``summary_start`` (the byte offset where the summary section begins)."""
    builder = RecordBuilder()
    offsets: list[SummaryOffset] = []

    def group(opcode: Opcode, records) -> None:
        start = builder.count
        for r in records:
            r.write(builder)
        if builder.count > start:
            offsets.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                         group_length=builder.count - start))

    group(Opcode.SCHEMA, summary.schemas.values())
    group(Opcode.CHANNEL, summary.channels.values())
    group(Opcode.STATISTICS, [Statistics(
        attachment_count=0, channel_count=len(summary.channels),
        channel_message_counts={cid: summary.channel_message_counts.get(cid, 0) for cid in summary.channels},
        chunk_count=summary.chunk_count, message_count=summary.message_count,
        message_end_time=summary.message_end_time, message_start_time=summary.message_start_time,
        metadata_count=len(summary.metadata), schema_count=len(summary.schemas))])
    group(Opcode.METADATA_INDEX, summary.metadata_indexes)
    summary_offset_start = summary_start + builder.count
    for offset in offsets:
        offset.write(builder)
    data = builder.end()
    crc = zlib.crc32(data)
    crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_start, summary_offset_start), crc)
    footer = _record(Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
                            summary_crc=crc).write)
    return data + footer + MAGIC


class McapStreamWriter:
    """Unchunked MCAP writer for one episode; not thread-safe (one writer thread owns it).

    ``add_*`` queue records in memory; :meth:`flush` writes them to ``stream`` (an unbuffered binary file: every
    record that ``flush`` returned from is in the OS and survives a SIGKILL of this process). The first OSError
    (ENOSPC, EIO, ...) is kept in :attr:`error`; later calls raise it again and write nothing more, and
    :attr:`good_bytes` stays at the end of the last record written completely, so the file can be closed
    (:meth:`finish`) or repaired (:func:`repair_mcap`) up to that record.
    """

    def __init__(self, stream: BinaryIO, profile: str = PROFILE, library: str = LIBRARY):
        self.stream = stream
        self.summary = McapSummary()
        self.good_bytes = 0  # bytes of complete records on disk
        self.error: OSError | None = None
        self.finished = False
        # one entry per record: its buffers, and what it adds to the summary once it is completely written
        self._pending: list[tuple[tuple, Callable[[int, int], None] | None]] = []
        self._sequence: dict[int, int] = {}
        self._queue((MAGIC + _record(Header(profile=profile, library=library).write),))
        self.flush()

    # ------------------------------------------------------------------ records
    def _queue(self, buffers: tuple, on_written: Callable[[int, int], None] | None = None) -> None:
        """Queue one record; ``on_written(start, end)`` runs once it is completely on disk."""
        if self.error is not None:
            raise self.error
        if self.finished:
            raise ValueError("MCAP writer already finished")
        self._pending.append((buffers, on_written))

    def add_schema(self, name: str, encoding: str, data: bytes) -> int:
        schema_id = len(self.summary.schemas) + 1
        schema = Schema(id=schema_id, name=name, encoding=encoding, data=data)
        self._queue((_record(schema.write),))
        self.summary.schemas[schema_id] = schema  # ids are taken now; a summary may list an unwritten schema
        return schema_id

    def add_channel(self, topic: str, message_encoding: str, schema_id: int, metadata: dict[str, str]) -> int:
        channel_id = len(self.summary.channels) + 1
        channel = Channel(id=channel_id, topic=topic, message_encoding=message_encoding, schema_id=schema_id,
                          metadata=dict(metadata))
        self._queue((_record(channel.write),))
        self.summary.channels[channel_id] = channel
        return channel_id

    def add_message(self, channel_id: int, log_time_ns: int, publish_time_ns: int, data: bytes | memoryview) -> None:
        if channel_id not in self.summary.channels:
            raise KeyError(f"unknown channel {channel_id}")
        sequence = self._sequence.get(channel_id, 0)
        self._sequence[channel_id] = sequence + 1
        header = _MESSAGE_HEADER.pack(Opcode.MESSAGE, 22 + len(data), channel_id, sequence & 0xFFFFFFFF,
                                      log_time_ns, publish_time_ns)
        self._queue((header, data), lambda _s, _e: self.summary.add_message(channel_id, log_time_ns))

    def add_metadata(self, name: str, values: dict[str, str]) -> None:
        values = dict(values)

        def written(start: int, end: int) -> None:
            self.summary.metadata.append((name, values))
            self.summary.metadata_indexes.append(MetadataIndex(offset=start, length=end - start, name=name))

        self._queue((_record(Metadata(name=name, metadata=values).write),), written)

    # ------------------------------------------------------------------ output
    def _write_all(self, buffer: bytes | memoryview) -> None:
        view = memoryview(buffer).cast("B")
        while len(view):
            n = self.stream.write(view)
            if n is None:  # non-blocking stream with nothing written: treat as an I/O error
                raise OSError(errno.EAGAIN, "write would block")
            view = view[n:]

    def flush(self) -> int:
        """Write every pending record; return the bytes written. Raises :class:`McapWriteError` on failure."""
        if self.error is not None:
            raise self.error
        written = 0
        try:
            for buffers, on_written in self._pending:
                start = self.good_bytes
                for b in buffers:
                    self._write_all(b)
                    written += len(b)
                self.good_bytes += sum(len(b) for b in buffers)
                if on_written is not None:
                    on_written(start, self.good_bytes)
        except OSError as exc:
            self.error = McapWriteError(exc.errno or errno.EIO, f"writing the MCAP file failed: {exc.strerror or exc}")
            self._pending.clear()
            raise self.error from exc
        self._pending.clear()
        return written

    def sync(self) -> None:
        """fsync the file (power-loss safety; a SIGKILL needs only :meth:`flush`)."""
        if self.error is None and hasattr(self.stream, "fileno"):
            try:
                os.fsync(self.stream.fileno())
            except (OSError, io.UnsupportedOperation):
                pass

    def finish(self) -> None:
        """Flush, then write DataEnd, the summary (schemas, channels, statistics, metadata index) and the footer.

        After a write error the file is first truncated to the last complete record. Raises
        :class:`McapWriteError` if the summary cannot be written either; the data written so far stays readable
        and :func:`repair_mcap` closes the file later.
        """
        if self.finished:
            return
        if self.error is None:
            self.flush()
        else:
            self._pending.clear()
            self.stream.truncate(self.good_bytes)
            self.stream.seek(self.good_bytes)
        summary_start = self.good_bytes + 9 + 4
        tail = _record(DataEnd(data_section_crc=0).write) + summary_bytes(self.summary, summary_start)
        try:
            self._write_all(tail)
        except OSError as exc:
            try:  # leave the data section intact: no half-written summary behind it
                self.stream.truncate(self.good_bytes)
            except OSError:
                pass
            self.error = self.error or McapWriteError(exc.errno or errno.EIO, f"closing the MCAP file failed: {exc}")
            raise McapWriteError(exc.errno or errno.EIO, f"closing the MCAP file failed: {exc}") from exc
        self.finished = True
        self.sync()


# ---------------------------------------------------------------------- reading back and repair
@dataclass
class ScanResult:
    """Outcome of scanning an MCAP file record by record (see :func:`scan_mcap`)."""

    summary: McapSummary
    data_end: int  # offset just past the last complete data-section record
    complete: bool  # DataEnd, footer and closing magic present
    file_size: int
    profile: str = ""
    reason: str = ""  # why the scan stopped early, if it did


def _message_prefix(stream: ReadDataStream) -> tuple[int, int]:
    channel_id = stream.read2()
    stream.read4()  # sequence
    log_time = stream.read8()
    return channel_id, log_time


def scan_mcap(path: str | Path) -> ScanResult:
    """Read the records of an MCAP file in order until it ends or stops making sense (truncated record, invalid
    opcode, unknown channel). Message payloads are skipped, not read. Works on files cut anywhere."""
    path = Path(path)
    size = path.stat().st_size
    summary = McapSummary()
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            return ScanResult(summary, 0, False, size, reason="no MCAP magic at the start")
        offset = len(MAGIC)
        profile = ""
        header_seen = False
        while True:
            prefix = f.read(9)
            if len(prefix) < 9:
                reason = "" if not prefix else "truncated record prefix"
                return ScanResult(summary, offset, False, size, profile, reason or "file ends without DataEnd")
            opcode, length = _RECORD_PREFIX.unpack(prefix)
            end = offset + 9 + length
            if opcode not in _VALID_OPCODES or length > _MAX_RECORD_BYTES:
                return ScanResult(summary, offset, False, size, profile, f"invalid record (opcode {opcode:#x})")
            if end > size:
                return ScanResult(summary, offset, False, size, profile, "truncated record")
            if not header_seen and opcode != Opcode.HEADER:
                return ScanResult(summary, offset, False, size, profile, "no Header record")
            if opcode == Opcode.MESSAGE:
                if length < 22:
                    return ScanResult(summary, offset, False, size, profile, "message record too short")
                channel_id, log_time = _message_prefix(ReadDataStream(f))
                if channel_id not in summary.channels:
                    return ScanResult(summary, offset, False, size, profile, "message on an unknown channel")
                summary.add_message(channel_id, log_time)
                f.seek(end)
            elif opcode == Opcode.DATA_END:
                f.seek(end)
                data_end = offset  # the DataEnd record itself is rewritten on repair
                tail = path.stat().st_size
                complete = False
                if tail >= end + 9 + 20 + len(MAGIC):
                    f.seek(tail - len(MAGIC))
                    complete = f.read(len(MAGIC)) == MAGIC
                return ScanResult(summary, data_end, complete, size, profile,
                                  "" if complete else "summary or footer missing")
            else:
                body = f.read(length)
                stream = ReadDataStream(io.BytesIO(body))
                try:
                    if opcode == Opcode.HEADER:
                        profile = Header.read(stream).profile
                        header_seen = True
                    elif opcode == Opcode.SCHEMA:
                        schema = Schema.read(stream)
                        summary.schemas[schema.id] = schema
                    elif opcode == Opcode.CHANNEL:
                        channel = Channel.read(stream)
                        summary.channels[channel.id] = channel
                    elif opcode == Opcode.METADATA:
                        record = Metadata.read(stream)
                        summary.metadata.append((record.name, record.metadata))
                        summary.metadata_indexes.append(MetadataIndex(offset=offset, length=9 + length,
                                                                      name=record.name))
                    elif opcode == Opcode.CHUNK:
                        _scan_chunk(body, summary)
                    elif opcode == Opcode.FOOTER:
                        return ScanResult(summary, offset, False, size, profile, "footer without DataEnd")
                except Exception as exc:  # noqa: BLE001  (a record that does not parse ends the readable part)
                    return ScanResult(summary, offset, False, size, profile, f"unreadable record: {exc}")
            offset = end


def _scan_chunk(body: bytes, summary: McapSummary) -> None:
    from mcap.records import Chunk, Message
    from mcap.stream_reader import breakup_chunk

    chunk = Chunk.read(ReadDataStream(io.BytesIO(body)))
    for record in breakup_chunk(chunk):
        if isinstance(record, Schema):
            summary.schemas[record.id] = record
        elif isinstance(record, Channel):
            summary.channels[record.id] = record
        elif isinstance(record, Message):
            summary.add_message(record.channel_id, record.log_time)
    summary.chunk_count += 1


@dataclass
class RepairResult:
    path: Path
    repaired: bool  # False: the file was already complete
    message_count: int
    dropped_bytes: int  # bytes of the incomplete tail that were cut off
    reason: str
    summary: McapSummary


def repair_mcap(path: str | Path) -> RepairResult:
    """Close an MCAP file left open by a crash: cut it after its last complete record and append DataEnd, summary
    and footer, in place. Idempotent (a complete file is left as it is); safe to interrupt and run again."""
    path = Path(path)
    scan = scan_mcap(path)
    if scan.complete:
        return RepairResult(path, False, scan.summary.message_count, 0, "complete", scan.summary)
    if scan.data_end == 0:
        raise ValueError(f"{path}: not an MCAP file ({scan.reason})")
    if scan.data_end < len(MAGIC) + 9:
        raise ValueError(f"{path}: no MCAP header record ({scan.reason})")
    summary_start = scan.data_end + 9 + 4
    tail = _record(DataEnd(data_section_crc=0).write) + summary_bytes(scan.summary, summary_start)
    with open(path, "r+b") as f:
        f.truncate(scan.data_end)
        f.seek(scan.data_end)
        f.write(tail)
        f.flush()
        os.fsync(f.fileno())
    return RepairResult(path, True, scan.summary.message_count, scan.file_size - scan.data_end, scan.reason,
                        scan.summary)


@dataclass(frozen=True)
class RawMessage:
    """One message as stored: topic, type name, times (ns) and CDR bytes."""

    topic: str
    type_name: str
    log_time_ns: int
    publish_time_ns: int
    data: bytes


def iter_messages(path: str | Path, topics: set[str] | None = None) -> Iterator[RawMessage]:
    """Messages of an MCAP file in file order (the recorder writes them in log-time order), using the ``mcap``
    library's reader. ``topics`` filters by topic name."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        reader = make_reader(f)
        for schema, channel, message in reader.iter_messages(topics=list(topics) if topics else None,
                                                             log_time_order=False):
            yield RawMessage(channel.topic, schema.name if schema is not None else "", message.log_time,
                             message.publish_time, message.data)
