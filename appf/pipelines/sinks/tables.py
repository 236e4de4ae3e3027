"""Parquet tables written whole: encoded in memory, then temp file + rename (or one put)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from appf.pipelines.processed import FailedEpisode
from appf.pipelines.sinks.atomic import temp_path
from appf.schemas import FAILURE_SCHEMA


def write_table(table: pa.Table, where) -> None:
    """`table` as zstd Parquet to a path or file object. A table without rows gets ZERO row groups:
    pyarrow would write one empty group, and Arrow's dataset scanner (used by
    `datasets.load_dataset`) fails on it with "BatchSize must be greater than 0"."""
    with pq.ParquetWriter(where, table.schema, compression="zstd") as writer:
        if table.num_rows:
            writer.write_table(table)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet file of `table` (zstd), as written by `write_parquet_atomic`."""
    buf = io.BytesIO()
    write_table(table, buf)
    return buf.getvalue()


def failures_table(failures: list[FailedEpisode]) -> pa.Table:
    rows = [{"dataset": f.dataset, "episode_id": f.episode_id, "stage": f.stage,
             "error_type": f.error_type, "message": f.message, "shard": f.shard} for f in failures]
    return pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
