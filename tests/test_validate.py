"""`appf validate` trusts nothing: each injected defect is reported with its file and field, and
validate never raises."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from appf.launch.validate_output import validate_output
from appf.storage import Location, layout, read_markers
from pipeline_helpers import run_local, small_config

PC_KEY = "pointclouds/shard-00000.zarr/data/point_cloud/c/0/0/0"  # the array's one shard object


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("validate") / "out"
    run_local(small_config(out))
    assert validate_output(out) == [] and validate_output(out, deep=True) == []
    return out


@pytest.fixture
def out(pristine, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(pristine, copy)
    return copy


def _one(problems: list[str], *needles: str) -> str:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no finding with {needles} in {problems}"
    return hits[0]


def _edit_json(path, edit) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(edit(data)))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0])
def test_byte_flip_in_a_chunk_is_named_and_never_crashes(out, fraction):
    path = out / PC_KEY
    data = bytearray(path.read_bytes())
    pos = min(int(len(data) * fraction), len(data) - 1)
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    validate_output(out)  # fast mode: must not raise (it does not read the per-point chunks)
    deep = validate_output(out, deep=True)
    _one(deep, PC_KEY, "sha256 checksum differs")


def test_deep_names_undecodable_chunk_by_array_and_frames(out):
    path = out / PC_KEY
    path.write_bytes(b"\x00" * path.stat().st_size)  # same size, nothing decodable
    deep = validate_output(out, deep=True)
    _one(deep, "shard-00000.zarr field data/point_cloud frames", "cannot decode")


@pytest.mark.parametrize("manifest, finding", [
    ([1, 2], ("manifest.json", "expected a JSON object, found list")),
    ("{not json", ("manifest.json", "not valid JSON")),
])
def test_unreadable_manifest(out, manifest, finding):
    (out / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    _one(validate_output(out), *finding)


def test_manifest_missing_keys_and_wrong_types(out):
    def edit(m):
        del m["counts"]
        m["shards"][0]["frames"] = "32"
        del m["shards"][1]["checksum"]
        return m
    _edit_json(out / "manifest.json", edit)
    problems = validate_output(out)
    _one(problems, "manifest.json field counts: missing")
    _one(problems, "manifest.json shards[0] field frames: expected int, found str")
    _one(problems, "manifest.json shards[1] field checksum: missing")


def test_manifest_counts_against_shards_and_data(out):
    _edit_json(out / "manifest.json", lambda m: {**m, "counts": {**m["counts"], "frames": 1}})
    _one(validate_output(out), "manifest.json field counts.frames: 1", "sum to 64")

    def entry_frames(m):
        m["shards"][0]["frames"] = 31
        return m
    _edit_json(out / "manifest.json", entry_frames)
    _one(validate_output(out), "manifest.json shards[0] field frames: 31",
         "_commits/shard-00000.json says 32")


def test_deleted_marker(out):
    (out / "_commits/shard-00001.json").unlink()
    problems = validate_output(out)
    _one(problems, "manifest.json shards[1]", "_commits/shard-00001.json is missing", "not committed")
    _one(problems, "pointclouds/shard-00001.zarr", "not committed")


def test_edited_marker(out):
    _edit_json(out / "_commits/shard-00000.json", lambda c: {**c, "frames": 30})
    problems = validate_output(out)
    _one(problems, "manifest.json shards[0] field frames: 32", "says 30")
    _one(problems, "shard-00000.zarr field meta/episode_ends: last end 32, marker says 30")

    def swap_sha(c):
        key = next(k for k in sorted(c["objects"]) if k.startswith(c["path"]))
        c["objects"][key]["sha256"] = "0" * 64
        return c
    _edit_json(out / "_commits/shard-00000.json", swap_sha)
    _one(validate_output(out), "_commits/shard-00000.json field checksum", "marker edited")


def test_garbage_marker(out):
    (out / "_commits/shard-00000.json").write_text("[]")
    problems = validate_output(out)
    _one(problems, "_commits/shard-00000.json: expected a JSON object")
    _one(problems, "manifest.json shards[0]", "not committed")


def test_shard_missing_from_manifest(out):
    def drop(m):
        m["shards"] = m["shards"][:1]
        return m
    _edit_json(out / "manifest.json", drop)
    problems = validate_output(out)
    _one(problems, "_commits/shard-00001.json: shard 1 is committed but missing from manifest.json")
    _one(problems, "manifest.json field counts.shards: 2", "sum to 1")


def test_dropped_sft_rows_are_found(out):
    path = out / "sft/records-00000.parquet"
    table = pq.read_table(path)
    assert table.num_rows > 1
    pq.write_table(table.slice(0, table.num_rows - 1), path, compression="zstd")
    problems = validate_output(out)
    _one(problems, "sft/records-00000.parquet: ", "bytes, marker says")
    _one(problems, "table sft/records-00000.parquet", f"{table.num_rows - 1} rows",
         f"sft_records says {table.num_rows}")


def test_corrupt_failures_table_is_named(out):
    path = out / "failures/failures-00001.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 20)
    problems = validate_output(out)
    _one(problems, "failures/failures-00001.parquet", "unreadable Parquet")
    _one(problems, "failures/failures-00001.parquet", "bytes, marker says")


def test_missing_and_stray_objects(out):
    (out / "pointclouds/shard-00000.zarr/meta/episode_ids/zarr.json").unlink()
    (out / "pointclouds/shard-00001.zarr/stray.bin").write_bytes(b"x")
    problems = validate_output(out)
    _one(problems, "shard-00000.zarr/meta/episode_ids/zarr.json: listed in", "but missing")
    _one(problems, "shard-00001.zarr/stray.bin: not listed", "stray")
    _one(problems, "shard pointclouds/shard-00000.zarr", "cannot open")


def test_not_an_output_and_bad_url(tmp_path):
    _one(validate_output(tmp_path), "manifest.json: missing")
    _one(validate_output("nosuchproto://x/y"), "nosuchproto://x/y: cannot open")


def test_valid_copy_stays_valid_and_markers_cover_every_object(out):
    # a valid copy stays valid, deep and fast, and every marker lists every object of its unit
    assert validate_output(out) == [] and validate_output(out, deep=True) == []
    loc = Location(out)
    for shard, commit in read_markers(loc).items():
        listed = set(commit.objects)
        for prefix in layout.unit_prefixes(shard):
            assert set(loc.list(prefix)) <= listed
