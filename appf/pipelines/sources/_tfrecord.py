"""TFRecord files without TensorFlow (beam-zarr-hub.md §3): the length-prefixed format (uint64
length, masked CRC32C of the length, data, masked CRC32C of the data; both CRCs checked with
google_crc32c, which zarr already depends on). TFDS has no TF-free TFRecord reader and Beam's
(`apache_beam.io.tfrecordio._TFRecordUtil`) is private. `scan_records` reads only the 12-byte
headers and seeks over the data, so listing a shard costs one small read per episode.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Sequence

from appf.schemas import SourceError

_HEADER = 12  # uint64 length + uint32 masked crc of the length
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits, add 0xa282ead8 (mod 2**32)."""
    import google_crc32c

    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _header(path: Path, fh: Any, index: int, offset: int, episode_id: str = "") -> int | None:
    """Length of the record whose header starts at `offset` (None at a clean end of file)."""
    head = fh.read(_HEADER)
    if not head:
        return None
    if len(head) < _HEADER:
        raise SourceError(f"TFRecord truncated in the header of record {index} (byte {offset})",
                          path=str(path), episode_id=episode_id, field=f"record {index}")
    length, crc = struct.unpack("<QI", head)
    if masked_crc32c(head[:8]) != crc:
        raise SourceError(f"TFRecord length CRC mismatch at record {index} (byte {offset}): "
                          "corrupt file or not a TFRecord", path=str(path), episode_id=episode_id,
                          field=f"record {index}")
    return length


def scan_records(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every record of a TFRecord file, from the headers only (the data is
    seeked over, not read: no decode, no data CRC)."""
    path = Path(path)
    size = path.stat().st_size
    out: list[tuple[int, int]] = []
    try:
        with open(path, "rb") as fh:
            offset = 0
            while True:
                length = _header(path, fh, len(out), offset)
                if length is None:
                    break
                end = offset + _HEADER + length + 4
                if end > size:
                    raise SourceError(f"TFRecord truncated: record {len(out)} needs bytes up to "
                                      f"{end}, file has {size}", path=str(path),
                                      field=f"record {len(out)}")
                out.append((offset, length))
                offset = end
                fh.seek(offset)
    except OSError as e:
        raise SourceError(f"cannot read TFRecord file: {e}", path=str(path)) from e
    return out


def read_record(path: Path, offset: int, length: int | None = None, *, verify: bool = True,
                episode_id: str = "", index: int | None = None) -> bytes:
    """The record whose header starts at byte `offset`; checks the header CRC, the expected
    `length` (from the scan) and, with `verify`, the data CRC."""
    path = Path(path)
    where = f"record {index}" if index is not None else f"record at byte {offset}"
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            n = _header(path, fh, -1 if index is None else index, offset, episode_id)
            if n is None or (length is not None and n != length):
                raise SourceError(f"TFRecord {where}: header says {n} bytes, the listing said "
                                  f"{length} (file changed since listing?)", path=str(path),
                                  episode_id=episode_id, field=where)
            data = fh.read(n)
            tail = fh.read(4)
    except OSError as e:
        raise SourceError(f"cannot read TFRecord file: {e}", path=str(path), episode_id=episode_id,
                          field=where) from e
    if len(data) != n or len(tail) != 4:
        raise SourceError(f"TFRecord truncated in {where}", path=str(path), episode_id=episode_id,
                          field=where)
    if verify and masked_crc32c(data) != struct.unpack("<I", tail)[0]:
        raise SourceError(f"TFRecord data CRC mismatch in {where}: corrupt record", path=str(path),
                          episode_id=episode_id, field=where)
    return data


def write_records(path: Path, records: Sequence[bytes]) -> None:
    """Write a TFRecord file (fixtures and benchmarks; readable by tf.data and Beam)."""
    with open(path, "wb") as fh:
        for r in records:
            head = struct.pack("<Q", len(r))
            fh.write(head + struct.pack("<I", masked_crc32c(head)) + r
                     + struct.pack("<I", masked_crc32c(r)))
