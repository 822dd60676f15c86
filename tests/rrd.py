"""Read a Rerun .rrd back for tests: entity path -> rows of components."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa


def read_rrd(path: Path) -> dict[str, list[dict]]:
    """entity path -> rows (component name -> value, plus 'ros_time' in ns where it is not static)."""
    import rerun.chunk as rc

    out: dict[str, list[dict]] = {}
    for chunk in rc.RrdReader(str(path)).stream():
        batch = chunk.to_record_batch()
        columns = {}
        for name, column in zip(batch.schema.names, batch.columns):
            key = name.split(":")[-1]
            if pa.types.is_timestamp(column.type) or pa.types.is_duration(column.type):
                column = column.cast(pa.int64())  # ns; datetime objects would drop the nanoseconds
            if key == "buffer":  # image bytes: their size only (a minute of depth as Python ints took minutes)
                columns[key] = [None if v is None else len(v) for v in _flat_lengths(column)]
                continue
            columns[key] = column.to_pylist()
        for i in range(batch.num_rows):
            out.setdefault(str(chunk.entity_path), []).append({k: v[i] for k, v in columns.items()})
    for rows in out.values():
        rows.sort(key=lambda r: r.get("ros_time") or 0)
    return out


def _flat_lengths(column) -> list:
    """Per row, the innermost values of a (nested) list column, as a pyarrow array (no Python conversion)."""
    out = []
    for i in range(len(column)):
        value = column[i]
        if not value.is_valid:
            out.append(None)
            continue
        values = value.values
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            values = values.flatten()
        out.append(values)
    return out
