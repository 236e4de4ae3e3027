"""Jobs writing to a real S3-speaking server (moto on loopback): a full job, a job killed in the
middle of a shard and resumed (byte-identical to an uninterrupted run), training reading the
s3:// output, and readers that trust only committed shards."""

from __future__ import annotations

import numpy as np
import pytest

from appf.launch.validate_output import validate_output
from appf.pipelines import graph
from appf.storage import Location, layout, read_markers
from appf.storage.commits import stored_objects
from appf.training.shards import ShardSet, find_shards
from appf.training.vlm.data import find_record_files, read_records
from pipeline_helpers import run_local, small_config
from s3_server import s3_bucket, s3_endpoint  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("local_ref")
    run_local(small_config(out))
    return Location(out)


def _objects_by_shard(loc: Location) -> dict[int, dict]:
    return {k: c.objects for k, c in read_markers(loc).items()}


def test_job_to_s3_writes_the_same_bytes_as_a_local_job(s3_bucket, local_reference):
    url = f"{s3_bucket}/full"
    summary = run_local(small_config(url))
    assert summary.episodes == 4 and summary.shards == 2 and summary.failures == 0
    loc = Location(url)
    assert _objects_by_shard(loc) == _objects_by_shard(local_reference)
    for shard, commit in read_markers(loc).items():  # every listed object is there, as listed
        for prefix in layout.unit_prefixes(shard):
            stored = stored_objects(loc, prefix)
            assert stored == {k: v for k, v in commit.objects.items() if k.startswith(prefix)}
    assert loc.exists(layout.MANIFEST) and loc.exists(layout.CARD) and loc.exists(layout.JOB_FILE)
    assert not loc.list(layout.STAGING_DIR)
    assert validate_output(url) == []


def test_job_killed_mid_shard_resumes_byte_identical(s3_bucket, local_reference, monkeypatch):
    url = f"{s3_bucket}/resumed"
    real_write = graph.write_store_objects
    calls = {"n": 0}

    def die_half_way(loc, key, objects):
        calls["n"] += 1
        if calls["n"] == 2:  # the second shard: half its objects reach the store, then death
            half = dict(sorted(objects.items())[: len(objects) // 2])
            real_write(loc, key, half)
            raise RuntimeError("simulated worker death")
        return real_write(loc, key, objects)

    monkeypatch.setattr(graph, "write_store_objects", die_half_way)
    with pytest.raises(Exception, match="simulated worker death"):
        run_local(small_config(url))
    loc = Location(url)
    assert len(read_markers(loc)) == 1
    uncommitted = ({0, 1} - set(read_markers(loc))).pop()
    assert loc.list(layout.shard_zarr_key(uncommitted))  # the half-written store is there
    assert find_shards(url) == [loc.url_of(c.path) for c in read_markers(loc).values()]

    monkeypatch.setattr(graph, "write_store_objects", real_write)
    summary = run_local(small_config(url))
    assert summary.skipped_episodes == 2 and summary.episodes == 4
    assert _objects_by_shard(loc) == _objects_by_shard(local_reference)
    commit = read_markers(loc)[uncommitted]
    assert stored_objects(loc, layout.shard_zarr_key(uncommitted)) == {
        k: v for k, v in commit.objects.items() if k.startswith(layout.shard_zarr_key(uncommitted))}
    assert validate_output(url) == []


def test_training_reads_committed_shards_from_s3(s3_bucket, local_reference):
    url = f"{s3_bucket}/train"
    run_local(small_config(url))
    paths = find_shards(url)
    assert paths == [f"{url}/pointclouds/shard-00000.zarr", f"{url}/pointclouds/shard-00001.zarr"]
    remote = ShardSet(paths, need_point_cloud=True)
    local = ShardSet(find_shards(local_reference.url), need_point_cloud=True)
    for key in local.lowdim:
        np.testing.assert_array_equal(remote.lowdim[key], local.lowdim[key])
    assert remote.episode_ids == local.episode_ids
    frames = np.array([0, 5, remote.n_frames - 1])
    np.testing.assert_array_equal(remote.point_clouds(frames), local.point_clouds(frames))
    records = find_record_files(url)  # the VLM's SFT records, read in place
    assert records == [f"{url}/sft/records-00000.parquet", f"{url}/sft/records-00001.parquet"]
    assert read_records(records).equals(read_records(find_record_files(local_reference.url)))
    # a shard whose marker is gone is not committed: training no longer sees it
    Location(url).delete(layout.marker_key(1))
    assert find_shards(url) == paths[:1]
    assert find_record_files(url) == records[:1]


def test_validate_on_s3_names_corrupt_object_and_missing_marker(s3_bucket):
    url = f"{s3_bucket}/validate"
    run_local(small_config(url))
    loc = Location(url)
    assert validate_output(url, deep=True) == []
    key = "pointclouds/shard-00000.zarr/data/point_cloud/c/0/0/0"
    data = bytearray(loc.read_bytes(key))
    data[len(data) // 2] ^= 0xFF
    loc.write_bytes(key, bytes(data))
    loc.delete(layout.marker_key(1))
    fast, deep = validate_output(url), validate_output(url, deep=True)
    assert any("_commits/shard-00001.json is missing" in p for p in fast)
    assert not any(key in p for p in fast)  # per-point chunks are hashed only with --deep
    assert any(key in p and "sha256 checksum differs" in p for p in deep)


def test_cli_job_on_s3_killed_with_sigkill_resumes_identical(s3_bucket, tmp_path, capsys):
    """`appf reannotate --out s3://...` in a subprocess, SIGKILLed mid-way, re-run: the output
    equals an uninterrupted run's byte for byte; validate and inspect read it by URL."""
    import json
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from appf.launch.cli import main

    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"source_options": {"steps": 16, "height": 96, "width": 128},
                                   "n_points": 128, "episodes_per_shard": 2, "progress_every_s": 0}))
    args = ["reannotate", "--source", "synthetic", "--episodes", "6", "--config", str(cfg)]
    url = f"{s3_bucket}/killed"
    loc = Location(url)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from appf.launch.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *args, "--out", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not loc.list(layout.STAGING_DIR) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not loc.exists(layout.MANIFEST)

    # Re-running resumes (the dead job's lease is taken over: same host, its pid is gone).
    assert main([*args, "--out", url]) == 0
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0
    assert _objects_by_shard(loc) == _objects_by_shard(Location(reference))
    assert not loc.list(layout.STAGING_DIR)
    assert main(["validate", url, "--deep"]) == 0
    capsys.readouterr()
    assert main(["inspect", url]) == 0
    assert "episodes 6/6" in capsys.readouterr().out
    assert json.loads(loc.read_text(layout.MANIFEST))["counts"]["episodes"] == 6
