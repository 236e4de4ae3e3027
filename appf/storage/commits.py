"""Commit markers: the one place that decides which shard units count as committed.

A shard unit is (pointclouds/shard-k.zarr, sft/records-k.parquet, failures/failures-k.parquet).
Its marker `_commits/shard-k.json` is written last, whole (temp + rename locally, one put on an
object store) and lists every object of the unit with its sha256 and size, plus the row counts of
both tables. Readers trust only units whose marker exists; before a unit is (re)written, objects
of it that no marker vouches for are removed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from appf.storage import layout
from appf.storage.location import Location


@dataclass
class ShardCommit:
    shard: int
    path: str | None  # zarr store key; None when every episode of the shard failed
    sft_path: str
    failures_path: str
    episodes: int
    frames: int
    failures: int      # rows of the failures table
    sft_records: int   # rows of the SFT table
    points: int
    checksum: str | None  # objects_digest of the zarr store's objects
    episode_ids: list[str] = field(default_factory=list)
    failed_episode_ids: list[str] = field(default_factory=list)
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    objects: dict[str, dict[str, object]] = field(default_factory=dict)  # key -> {sha256, bytes}
    action_space: str = ""  # the source's description of data/action ("" when no episode landed)
    action_dim: int = 0


class MarkerError(ValueError):
    """A commit marker that cannot be parsed; the message names the key and the field."""


def object_entry(data: bytes) -> dict[str, object]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def objects_digest(objects: dict[str, dict[str, object]], prefix: str = "") -> str:
    """One sha256 over (key relative to `prefix`, object sha256) of the objects below `prefix`."""
    h = hashlib.sha256()
    for key in sorted(k for k in objects if k.startswith(prefix)):
        h.update(f"{key[len(prefix):].lstrip('/')}\0{objects[key]['sha256']}\n".encode())
    return h.hexdigest()


def marker_bytes(commit: ShardCommit) -> bytes:
    return json.dumps(asdict(commit), indent=1, sort_keys=True).encode()


def write_marker(loc: Location, commit: ShardCommit) -> None:
    """The commit point of a shard unit: call after every object of the unit is written."""
    loc.write_bytes(layout.marker_key(commit.shard), marker_bytes(commit))


def parse_marker(data: bytes, key: str) -> ShardCommit:
    """A ShardCommit from marker bytes; MarkerError naming `key` and the field otherwise."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MarkerError(f"{key}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise MarkerError(f"{key}: expected a JSON object, found {type(raw).__name__}")
    known = {f.name for f in fields(ShardCommit)}
    required = {"shard", "path", "sft_path", "failures_path", "episodes", "frames", "failures",
                "sft_records", "points", "checksum"}
    missing = sorted(required - set(raw))
    if missing:
        raise MarkerError(f"{key}: missing field(s) {missing}")
    for name in ("shard", "episodes", "frames", "failures", "sft_records", "points"):
        if not isinstance(raw[name], int) or isinstance(raw[name], bool) or raw[name] < 0:
            raise MarkerError(f"{key} field {name}: expected a non-negative integer, found {raw[name]!r}")
    if not isinstance(raw.get("objects", {}), dict):
        raise MarkerError(f"{key} field objects: expected an object (key -> sha256, bytes)")
    return ShardCommit(**{k: v for k, v in raw.items() if k in known})


def read_marker(loc: Location, shard: int) -> ShardCommit:
    key = layout.marker_key(shard)
    return parse_marker(loc.read_bytes(key), key)


def marker_keys(loc: Location) -> dict[int, str]:
    """shard -> marker key, for every marker present."""
    found = {}
    for key in loc.list(layout.COMMITS_DIR):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("shard-") and name.endswith(".json"):
            shard = layout.shard_of_key(name)
            if shard is not None:
                found[shard] = key
    return found


def read_markers(loc: Location) -> dict[int, ShardCommit]:
    """Every committed shard unit. MarkerError for a marker that cannot be parsed."""
    return {shard: parse_marker(loc.read_bytes(key), key)
            for shard, key in sorted(marker_keys(loc).items())}


def clean_uncommitted(loc: Location, committed: set[int]) -> list[str]:
    """Remove objects of shard units without a marker and temporaries of killed local writes.

    Call before any worker writes (the driver does, at the start of a run). Returns what went."""
    removed = []
    for top in (layout.POINTCLOUDS_DIR, layout.SFT_DIR, layout.FAILURES_DIR):
        for head in loc.children(top):  # a store or a table
            shard = layout.shard_of_key(head)
            if layout.is_temporary(head) or (shard is not None and shard not in committed):
                loc.delete_tree(head)
                removed.append(head)
    return removed


def stored_objects(loc: Location, prefix: str) -> dict[str, dict[str, object]]:
    """Entries (sha256, bytes) of the objects now stored below `prefix`, read back in full."""
    return {key: object_entry(loc.read_bytes(key)) for key in loc.list(prefix)}


def committed_entries(loc: Location) -> list[dict] | None:
    """The committed shard units, in shard order, as manifest-style entries (shard, path, sft_path,
    failures_path, counts): from the commit markers, else from manifest.json (a Hub download carries
    the manifest, not the markers); None when the location has neither. MarkerError or ValueError
    when they cannot be read."""
    if marker_keys(loc):
        return [asdict(c) for _, c in sorted(read_markers(loc).items())]
    if loc.exists(layout.MANIFEST):
        shards = json.loads(loc.read_text(layout.MANIFEST))["shards"]
        if not isinstance(shards, list) or not all(isinstance(e, dict) for e in shards):
            raise ValueError(f"{layout.MANIFEST} field shards: expected a list of objects")
        return sorted(shards, key=lambda e: e["shard"])
    return None
