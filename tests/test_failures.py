"""Bad input never stops the job: each bad episode lands in the failures table with its stage
and a message naming the episode and field; good episodes are written."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from appf.launch.validate_output import validate_output
from appf.pipelines.config import JobConfig
from appf.schemas import ConfigError
from pipeline_helpers import SMALL_SOURCE, run_local, small_config

FAULTS = {
    1: ("raise_read", "read", "OSError", "corrupt file"),
    2: ("empty", "read", "EpisodeValidationError", "empty episode"),
    3: ("mismatched_lengths", "read", "EpisodeValidationError", "steps.action"),
    4: ("missing_intrinsics", "read", "EpisodeValidationError", "intrinsics"),
    5: ("nan_depth_eager", "read", "EpisodeValidationError", "depth"),
    6: ("nan_depth_lazy", "depth", "ValueError", "NaN/inf"),
    7: ("corrupt_segmentation", "masks", "OSError", "segmentation.h5"),
    8: ("no_depth_points", "pointcloud", "EmptyCloudError", "step 0"),
}


@pytest.fixture(scope="module")
def faulty_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("faulty")
    cfg = small_config(out, source="faulty_source:FaultySource", episodes_per_shard=4,
                       source_options={**SMALL_SOURCE, "episodes": 10,
                                       "faults": {k: v[0] for k, v in FAULTS.items()}})
    return out, run_local(cfg)


def test_job_completes_and_counts_failures(faulty_job):
    out, summary = faulty_job
    assert summary.episodes == 2 and summary.failures == 8
    assert summary.failures_by_stage == {"read": 5, "depth": 1, "masks": 1, "pointcloud": 1}
    assert "failures 8" in summary.text()
    assert validate_output(out) == []


def test_failures_table_names_episode_stage_and_reason(faulty_job):
    out, _ = faulty_job
    rows = []
    for f in sorted((out / "failures").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    by_id = {r["episode_id"]: r for r in rows}
    assert len(rows) == 8
    for index, (_, stage, error_type, needle) in FAULTS.items():
        r = by_id[f"synthetic-{index:06d}"]
        assert (r["stage"], r["error_type"]) == (stage, error_type), r
        assert needle in r["message"], r["message"]
        assert r["shard"] == index // 4


def test_good_episodes_are_written_and_all_failed_shard_is_recorded(faulty_job):
    out, _ = faulty_job
    m = json.loads((out / "manifest.json").read_text())
    shards = {s["shard"]: s for s in m["shards"]}
    assert shards[0]["episodes"] == 1 and shards[2]["episodes"] == 1
    assert shards[1]["path"] is None and shards[1]["failures"] == 4


def test_validation_message_names_every_problem(faulty_job):
    out, _ = faulty_job
    rows = pq.read_table(out / "failures/failures-00000.parquet").to_pylist()
    msg = next(r["message"] for r in rows if r["episode_id"] == "synthetic-000003")
    assert "synthetic/synthetic-000003" in msg and "expected shape (16, D)" in msg


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="zarr_format must be 2 or 3"):
        JobConfig(zarr_format=4)
    with pytest.raises(ConfigError, match="unknown config key"):
        JobConfig.from_dict({"n_pointz": 3})


def test_uncalibrated_camera_validates_but_cannot_give_base_frame_clouds():
    import dataclasses

    from appf.pipelines.sources.synthetic import SyntheticSource
    from appf.schemas import check_episode, validate_episode

    src = SyntheticSource(**{**SMALL_SOURCE, "episodes": 1})
    ep = src.read(src.list_refs()[0])
    cam = next(iter(ep.cameras.values()))
    missing = dataclasses.replace(cam, T_base_cam=None)
    bad = dataclasses.replace(ep, cameras={cam.name: missing})
    assert [p.field for p in validate_episode(bad)] == ["cameras['front'].T_base_cam"]
    flagged = dataclasses.replace(bad, cameras={cam.name: dataclasses.replace(
        missing, extrinsics_unknown=True)})
    check_episode(flagged)
    with pytest.raises(ValueError, match="no extrinsics"):
        flagged.cameras["front"].T_base_cam_at(0)
