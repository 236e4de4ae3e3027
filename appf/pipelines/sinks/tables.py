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


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def parquet_bytes(table: pa.Table) -> bytes:
    """The Parquet file of `table` (zstd), as written by `write_parquet_atomic`."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def failures_table(failures: list[FailedEpisode]) -> pa.Table:
    rows = [{"dataset": f.dataset, "episode_id": f.episode_id, "stage": f.stage,
             "error_type": f.error_type, "message": f.message, "shard": f.shard} for f in failures]
    return pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
