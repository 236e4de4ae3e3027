"""appf.storage on a local directory and on fsspec's in-memory filesystem (a real fsspec backend
without atomic rename): whole-object writes, listing, markers, clean-up of uncommitted units."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from appf.storage import (
    Location, MarkerError, ShardCommit, clean_uncommitted, encode_store, layout, object_entry,
    objects_digest, open_group, read_markers, write_marker, write_store_objects,
)
from appf.storage.commits import parse_marker, stored_objects


@pytest.fixture(params=["local", "memory"])
def loc(request, tmp_path):
    if request.param == "local":
        return Location(tmp_path / "out")
    return Location(f"memory://appf-test-{uuid.uuid4().hex[:8]}/out")


def _store_objects():
    def build(root):
        arr = root.create_group("data").create_array("x", shape=(6, 2), dtype="float32",
                                                     chunks=(3, 2), shards=(6, 2))
        arr[...] = np.arange(12, dtype=np.float32).reshape(6, 2)
    return encode_store(build, 3)


def test_bytes_round_trip_list_and_delete(loc):
    loc.write_bytes("a/b/c.bin", b"\x00\x01")
    loc.write_text("a/d.json", "{}")
    assert loc.read_bytes("a/b/c.bin") == b"\x00\x01" and loc.exists("a/d.json")
    assert loc.list("a") == ["a/b/c.bin", "a/d.json"]
    assert loc.children("a") == ["a/b", "a/d.json"]
    loc.delete_tree("a/b")
    assert loc.list("a") == ["a/d.json"] and not loc.exists("a/b/c.bin")
    loc.delete_tree("nothing/here")  # absent is fine
    with pytest.raises(FileNotFoundError, match="missing.json"):
        loc.read_bytes("missing.json")
    assert not [k for k in loc.list("") if ".tmp-" in k]  # no temporaries left by writes


def test_zarr_store_written_whole_reads_back_and_checksums(loc):
    objects = _store_objects()
    write_store_objects(loc, "pointclouds/shard-00000.zarr", objects)
    g = open_group(loc, "pointclouds/shard-00000.zarr")
    np.testing.assert_array_equal(g["data/x"][:], np.arange(12).reshape(6, 2))
    entries = {f"pointclouds/shard-00000.zarr/{k}": object_entry(v) for k, v in objects.items()}
    assert stored_objects(loc, "pointclouds/shard-00000.zarr") == entries
    assert objects_digest(entries, "pointclouds/shard-00000.zarr/") == objects_digest(
        stored_objects(loc, "pointclouds/shard-00000.zarr"), "pointclouds/shard-00000.zarr/")


def test_marker_round_trip_and_clean_up_of_uncommitted_units(loc):
    for shard in (0, 1):
        write_store_objects(loc, layout.shard_zarr_key(shard), _store_objects())
        loc.write_bytes(layout.sft_key(shard), b"sft")
        loc.write_bytes(layout.failures_key(shard), b"fail")
    commit = ShardCommit(shard=0, path=layout.shard_zarr_key(0), sft_path=layout.sft_key(0),
                         failures_path=layout.failures_key(0), episodes=1, frames=6, failures=0,
                         sft_records=0, points=6, checksum=None,
                         objects={layout.sft_key(0): object_entry(b"sft")})
    write_marker(loc, commit)
    assert read_markers(loc) == {0: commit}
    removed = clean_uncommitted(loc, set(read_markers(loc)))
    assert sorted(removed) == [layout.failures_key(1), layout.shard_zarr_key(1), layout.sft_key(1)]
    assert loc.exists(layout.sft_key(0)) and loc.list(layout.shard_zarr_key(0))
    assert not loc.list(layout.shard_zarr_key(1))


@pytest.mark.parametrize("data, field", [
    (b"[1, 2]", "expected a JSON object"), (b"{not json", "not valid JSON"),
    (b'{"shard": 0}', "missing field"),
])
def test_bad_markers_are_named(data, field):
    with pytest.raises(MarkerError, match=field) as e:
        parse_marker(data, "_commits/shard-00000.json")
    assert "_commits/shard-00000.json" in str(e.value)


def test_local_leftover_temporaries_are_cleaned(tmp_path):
    loc = Location(tmp_path)
    (tmp_path / "pointclouds/.shard-00003.zarr.tmp-dead").mkdir(parents=True)
    assert clean_uncommitted(loc, set()) == ["pointclouds/.shard-00003.zarr.tmp-dead"]
    assert loc.children("pointclouds") == []


def test_location_pickles_by_url(tmp_path):
    import pickle

    loc = Location(tmp_path)
    again = pickle.loads(pickle.dumps(loc))
    assert again.url == loc.url and again.is_local
