"""The same job on other runners writes byte-identical shards to the in-process local runner's:
Beam's DaskRunner (dask.distributed LocalCluster, 2 worker processes) and the multi-process
FnApiRunner."""

from __future__ import annotations

from appf.launch.runners import pipeline_options
from appf.launch.validate_output import validate_output
from appf.pipelines.job import run_job
from pipeline_helpers import run_local, shard_checksums, small_config


def test_dask_runner_matches_local_runner(tmp_path):
    local = tmp_path / "local"
    run_local(small_config(local))
    dask_out = tmp_path / "dask"
    cfg = small_config(dask_out, runner="dask", workers=2)
    with pipeline_options(cfg) as options:
        summary = run_job(cfg, options)
    assert summary.episodes == 4 and summary.failures == 0
    assert validate_output(dask_out) == []
    sums = shard_checksums(dask_out)
    assert len(sums) == 2 and sums == shard_checksums(local)


def test_multi_process_local_runner_matches_single_process(tmp_path):
    single = tmp_path / "single"
    run_local(small_config(single))
    multi = tmp_path / "multi"
    cfg = small_config(multi, workers=2)
    with pipeline_options(cfg) as options:
        summary = run_job(cfg, options)
    assert summary.episodes == 4 and validate_output(multi) == []
    assert shard_checksums(multi) == shard_checksums(single)
