"""End-to-end: the Beam job on the synthetic source writes valid DP3-layout shards, SFT records
and a manifest; resume after an interruption gives the same output."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from appf.launch.validate_output import validate_output
from appf.pipelines import graph
from appf.pipelines.sources.synthetic import SyntheticSource
from appf.pipelines.sources import make_source
from appf.schemas import ConfigError
from appf.transforms.geometry import transform_points, unproject
from pipeline_helpers import SMALL_SOURCE, run_local, shard_checksums, small_config


@pytest.fixture(scope="module")
def job3(tmp_path_factory):
    out = tmp_path_factory.mktemp("job3")
    summary = run_local(small_config(out))
    return out, summary


def test_job_writes_everything(job3):
    out, summary = job3
    assert summary.episodes == 4 and summary.failures == 0 and summary.shards == 2
    assert summary.frames == 4 * SMALL_SOURCE["steps"]
    assert validate_output(out) == []
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["episodes"] == 4 and len(m["shards"]) == 2
    assert (out / "README.md").read_text().startswith("---")
    assert not (out / "_staging").exists()


def test_shard_is_dp3_replay_buffer_layout(job3):
    out, _ = job3
    root = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")
    ends = root["meta/episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == [16, 32]
    assert list(root["meta/episode_ids"][:]) == ["synthetic-000000", "synthetic-000001"]
    pc = root["data/point_cloud"]
    assert pc.shape == (32, 128, 6) and pc.dtype == np.float32
    for key in ("state", "action", "ee_pose", "gripper", "timestamp", "keyframe", "point_label"):
        assert root[f"data/{key}"].shape[0] == 32
    assert root["data/state"].shape == (32, 8)
    rgb = pc[:][..., 3:]
    assert rgb.min() >= 0 and rgb.max() <= 1
    meta = json.loads((out / "pointclouds/shard-00000.zarr/data/point_cloud/zarr.json").read_text())
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    assert root.attrs["n_points"] == 128 and root.attrs["depth_backend"] == "ground_truth"


def test_points_lie_on_ground_truth_surfaces(job3):
    """Every written point is within 1 mm of a point unprojected from the exact depth."""
    out, _ = job3
    root = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")
    src = SyntheticSource(**SMALL_SOURCE)
    ep = src.read(src.list_refs()[0])
    cam = next(iter(ep.cameras.values()))
    from scipy.spatial import cKDTree

    for t in (0, 7, 15):
        pts = unproject(cam.depth[t].astype(np.float64), cam.intrinsics)
        valid = cam.depth[t] > 0
        surface = transform_points(cam.T_base_cam_at(t), pts[valid])
        written = root["data/point_cloud"][t][:, :3].astype(np.float64)
        d, _ = cKDTree(surface).query(written)
        assert d.max() < 1e-3


def test_sft_records(job3):
    out, _ = job3
    rows = pq.read_table(out / "sft/records-00000.parquet").to_pylist()
    assert rows, "keyframe records expected"
    src = SyntheticSource(**SMALL_SOURCE)
    ep = src.read(src.list_refs()[0])
    mine = [r for r in rows if r["episode_id"] == ep.episode_id]
    kf = [r["target_frame"] for r in mine]
    md = ep.metadata
    assert kf == [md["gripper_close_step"], md["gripper_open_step"], ep.num_steps - 1]
    for r in mine:
        K = np.asarray(r["K"]).reshape(3, 3)
        u, v, d = r["anchor_uvd"]
        p_cam = np.array([(u - K[0, 2]) * d / K[0, 0], (v - K[1, 2]) * d / K[1, 1], d])
        cam = next(iter(ep.cameras.values()))
        p_base = transform_points(cam.T_base_cam_at(r["obs_frame"]), p_cam)
        np.testing.assert_allclose(p_base, ep.steps.ee_pose[r["target_frame"], 0, :3], atol=1e-6)
        assert r["messages"][0]["content"][0]["type"] == "image"
        assert r["image"]["bytes"][:2] == b"\xff\xd8"  # JPEG (HF Image struct: bytes, path)


def test_zarr_format_2_layout(tmp_path):
    out = tmp_path / "v2"
    cfg = small_config(out, zarr_format=2, source_options={**SMALL_SOURCE, "episodes": 2})
    run_local(cfg)
    shard = out / "pointclouds/shard-00000.zarr"
    assert (shard / ".zgroup").is_file() and (shard / "data/.zgroup").is_file()
    zarray = json.loads((shard / "data/point_cloud/.zarray").read_text())
    assert zarray["zarr_format"] == 2 and zarray["compressor"]["id"] == "blosc"
    assert zarray["compressor"]["cname"] == "zstd"
    assert zarray["chunks"][1:] == [128, 6]
    ends = json.loads((shard / "meta/episode_ends/.zarray").read_text())
    assert ends["dtype"] == "<i8"
    root = zarr.open_group(str(shard), mode="r", zarr_format=2)
    assert root["meta/episode_ends"][:].tolist() == [16, 32]
    assert validate_output(out) == []


def test_interrupted_run_resumes_to_identical_output(tmp_path, monkeypatch, job3):
    reference, _ = job3
    out = tmp_path / "resumed"
    cfg = small_config(out)
    real_write = graph.write_store_objects
    calls = {"n": 0}

    def crash_on_second_shard(loc, key, objects):
        calls["n"] += 1
        if calls["n"] == 2:
            path = loc.local_path(key)
            path.with_name(f".{path.name}.tmp-dead").mkdir(parents=True)  # half-written
            raise RuntimeError("simulated worker crash")
        return real_write(loc, key, objects)

    monkeypatch.setattr(graph, "write_store_objects", crash_on_second_shard)
    with pytest.raises(Exception, match="simulated worker crash"):
        run_local(cfg)
    committed = sorted(p.name for p in (out / "_commits").glob("*.json"))
    assert len(committed) == 1
    monkeypatch.setattr(graph, "write_store_objects", real_write)
    summary = run_local(cfg)
    assert summary.skipped_episodes == 2 and summary.episodes == 4
    assert shard_checksums(out) == shard_checksums(reference)
    assert not list((out / "pointclouds").glob(".*tmp*"))
    assert validate_output(out) == []
    # a third run has nothing to do and changes nothing
    again = run_local(cfg)
    assert again.skipped_episodes == 4 and shard_checksums(out) == shard_checksums(reference)


def test_other_config_on_same_output_is_refused(job3, tmp_path):
    out = tmp_path / "cfg"
    run_local(small_config(out, source_options={**SMALL_SOURCE, "episodes": 2}))
    with pytest.raises(ConfigError, match="another config"):
        run_local(small_config(out, n_points=64, source_options={**SMALL_SOURCE, "episodes": 2}))


def test_validate_names_broken_shard_and_field(tmp_path):
    out = tmp_path / "broken"
    run_local(small_config(out, source_options={**SMALL_SOURCE, "episodes": 2}))
    root = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r+")
    root["meta/episode_ends"][1] = 99
    problems = validate_output(out)
    assert any("shard-00000.zarr" in p and "checksum" in p for p in problems)
    assert any("meta/episode_ends" in p for p in problems)


def test_source_registry_errors():
    with pytest.raises(ConfigError, match="unknown source"):
        make_source("nope")


def test_shared_model_copies_give_the_same_shards(job3, tmp_path):
    """model_copies routes calls through Beam's shared-model proxy (large_model); the output and
    the recorded provenance must not change."""
    reference, _ = job3
    out = tmp_path / "copies"
    summary = run_local(small_config(out, model_copies=1))
    assert summary.failures == 0
    assert shard_checksums(out) == shard_checksums(reference)
