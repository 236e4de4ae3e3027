"""`appf validate`, part 2: commit markers vs manifest vs stored objects, and the Parquet tables
(checksums from the marker, row counts against marker and manifest)."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from appf.schemas import FAILURE_SCHEMA, SFT_SCHEMA
from appf.storage import Location, MarkerError, ShardCommit, layout, marker_keys, objects_digest
from appf.storage.commits import object_entry, parse_marker

# manifest entry field -> marker field that must agree
_AGREE = ("path", "sft_path", "failures_path", "episodes", "frames", "failures", "sft_records",
          "checksum")


def read_markers_checked(loc: Location) -> tuple[dict[int, ShardCommit], list[str]]:
    """Every marker that parses (shard -> commit) and a finding for each one that does not."""
    commits, problems = {}, []
    for shard, key in sorted(marker_keys(loc).items()):
        try:
            commit = parse_marker(loc.read_bytes(key), key)
        except MarkerError as e:
            problems.append(f"{e} (shard {shard} cannot count as committed)")
            continue
        if commit.shard != shard:
            problems.append(f"{key} field shard: {commit.shard}, but the marker's name says {shard}")
            continue
        commits[shard] = commit
    return commits, problems


def marker_vs_manifest(commits: dict[int, ShardCommit], entries: list[dict]) -> list[str]:
    problems = []
    by_shard = {e["shard"]: (i, e) for i, e in enumerate(entries)}
    for shard in sorted(set(by_shard) - set(commits)):
        problems.append(f"{layout.MANIFEST} shards[{by_shard[shard][0]}]: shard {shard} is listed "
                        f"but {layout.marker_key(shard)} is missing or unreadable: not committed")
    for shard in sorted(set(commits) - set(by_shard)):
        problems.append(f"{layout.marker_key(shard)}: shard {shard} is committed but missing from "
                        f"{layout.MANIFEST} (re-run the job to rebuild the manifest)")
    for shard in sorted(set(commits) & set(by_shard)):
        i, entry = by_shard[shard]
        commit = commits[shard]
        for name in _AGREE:
            if entry[name] != getattr(commit, name):
                problems.append(f"{layout.MANIFEST} shards[{i}] field {name}: {entry[name]!r}, but "
                                f"{layout.marker_key(shard)} says {getattr(commit, name)!r}")
    return problems


def marker_self_check(commit: ShardCommit) -> list[str]:
    """A marker's own consistency: its object list covers the unit and matches its checksum."""
    key, problems = layout.marker_key(commit.shard), []
    expected = {commit.sft_path, commit.failures_path}
    missing = sorted(k for k in expected if k not in commit.objects)
    if missing:
        problems.append(f"{key} field objects: does not list {missing}")
    if commit.path:
        if commit.checksum != objects_digest(commit.objects, commit.path + "/"):
            problems.append(f"{key} field checksum: does not match the digest of the objects it "
                            "lists under " + commit.path + " (marker edited?)")
    return problems


def objects_vs_marker(loc: Location, commit: ShardCommit, deep: bool) -> list[str]:
    """Stored objects of the unit against the marker: presence, size; sha256 of every object with
    `deep`, else of all but the per-point chunks (tables, metadata, low-dimensional arrays)."""
    prefixes = [p for p in (commit.path, commit.sft_path, commit.failures_path) if p]
    stored: dict[str, int] = {}
    for prefix in prefixes:
        stored.update(loc.sizes(prefix))
    problems = []
    for key in sorted(set(commit.objects) - set(stored)):
        problems.append(f"{key}: listed in {layout.marker_key(commit.shard)} but missing")
    for key in sorted(set(stored) - set(commit.objects)):
        problems.append(f"{key}: not listed in {layout.marker_key(commit.shard)} (stray object)")
    for key in sorted(set(stored) & set(commit.objects)):
        want = commit.objects[key]
        if stored[key] != want.get("bytes"):
            problems.append(f"{key}: {stored[key]} bytes, marker says {want.get('bytes')}")
        elif deep or not _is_bulk(key):
            if object_entry(loc.read_bytes(key))["sha256"] != want.get("sha256"):
                problems.append(f"{key}: sha256 checksum differs from "
                                f"{layout.marker_key(commit.shard)} (corrupted or changed since writing)")
    return problems


def _is_bulk(key: str) -> bool:
    """Chunks of the per-point arrays (the bulk of a dataset): hashed only with --deep."""
    return any(f"/data/{name}/" in key and not key.endswith(("zarr.json", ".zarray", ".zattrs"))
               for name in ("point_cloud", "point_label"))


def table_problems(loc: Location, commit: ShardCommit, entry: dict | None) -> list[str]:
    """Each Parquet table: readable, appf's schema, row counts against marker and manifest."""
    problems = []
    for key, schema, field in ((commit.sft_path, SFT_SCHEMA, "sft_records"),
                               (commit.failures_path, FAILURE_SCHEMA, "failures")):
        try:
            pf = pq.ParquetFile(io.BytesIO(loc.read_bytes(key)))
            found = pf.schema_arrow
            rows = pf.metadata.num_rows
        except FileNotFoundError:
            continue  # reported by objects_vs_marker
        except Exception as e:  # noqa: BLE001 - any reader failure is a finding
            problems.append(f"table {key}: unreadable Parquet: {type(e).__name__}: {e}")
            continue
        if not found.remove_metadata().equals(schema.remove_metadata()):
            problems.append(f"table {key}: schema differs from appf's: found {found.names}, "
                            f"expected {schema.names}")
        if rows != getattr(commit, field):
            problems.append(f"table {key}: {rows} rows, {layout.marker_key(commit.shard)} field "
                            f"{field} says {getattr(commit, field)}")
        if entry is not None and rows != entry[field]:
            problems.append(f"table {key}: {rows} rows, {layout.MANIFEST} field {field} of shard "
                            f"{commit.shard} says {entry[field]}")
    return problems


def uncommitted_objects(loc: Location, committed: set[int]) -> list[str]:
    """Stores and tables that no marker vouches for (an interrupted run's leftovers)."""
    problems = []
    for top in (layout.POINTCLOUDS_DIR, layout.SFT_DIR, layout.FAILURES_DIR):
        for head in loc.children(top):
            shard = layout.shard_of_key(head)
            if shard is not None and shard not in committed:
                problems.append(f"{head}: belongs to shard {shard}, which is not committed (no "
                                "valid marker); readers ignore it, a resume rewrites it")
    return problems
