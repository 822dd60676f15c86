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
            if pa.types.is_timestamp(column.type) or pa.types.is_duration(column.type):
                column = column.cast(pa.int64())  # ns; datetime objects would drop the nanoseconds
            columns[name.split(":")[-1]] = column.to_pylist()
        for i in range(batch.num_rows):
            out.setdefault(str(chunk.entity_path), []).append({k: v[i] for k, v in columns.items()})
    for rows in out.values():
        rows.sort(key=lambda r: r.get("ros_time") or 0)
    return out
