"""`appf export dp3` and the zarr-2 replay-buffer contract of DP3 / diffusion_policy.

The shards and the export are opened, read, copied into a MemoryStore and saved back by zarr 2.18.7
and by zarr 2.12.0 (DP3's pin) in a subprocess (see replay_buffer_contract.py); every episode
window cut with the saved store's episode_ends must equal what appf wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from appf.exports import ExportError
from appf.exports.dp3 import export_dp3
from appf.launch.cli import main
from appf.pipelines.sinks.commits import commit_path
from pipeline_helpers import SMALL_SOURCE, run_local, small_config
from replay_buffer_contract import CLIENTS, run_contract

CLIENT_PARAMS = [pytest.param(c, id=c.name.replace(" ", "-"),
                              marks=pytest.mark.skipif(not c.available, reason=f"{c.name} not installed: "
                                                       "`make setup` installs it")) for c in CLIENTS]
SOURCE = {**SMALL_SOURCE, "episodes": 5, "steps": 16, "height": 64, "width": 96}


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    """A default (zarr format 3) run with 3 committed shards: episodes 2 + 2 + 1."""
    out = tmp_path_factory.mktemp("run3") / "out"
    summary = run_local(small_config(out, source_options=SOURCE, n_points=96))
    assert summary.shards == 3 and summary.episodes == 5
    return out, summary


@pytest.fixture(scope="module")
def shard_v2(tmp_path_factory):
    out = tmp_path_factory.mktemp("v2") / "out"
    run_local(small_config(out, zarr_format=2, source_options={**SOURCE, "episodes": 2}))
    return out / "pointclouds/shard-00000.zarr"


def _episodes_by_id(out) -> dict[str, dict[str, np.ndarray]]:
    """Each episode's arrays as appf wrote them, read from the run's shards with zarr 3."""
    found = {}
    for shard in sorted((out / "pointclouds").glob("shard-*.zarr")):
        root = zarr.open_group(str(shard), mode="r")
        ends = root["meta/episode_ends"][:]
        for i, eid in enumerate(root["meta/episode_ids"][:]):
            lo = 0 if i == 0 else int(ends[i - 1])
            found[str(eid)] = {k: np.asarray(v[lo:int(ends[i])]) for k, v in root["data"].members()}
    return found


@pytest.mark.parametrize("client", CLIENT_PARAMS)
def test_format2_shard_round_trips_through_replay_buffer(client, shard_v2, tmp_path):
    summary, windows = run_contract(client, shard_v2, tmp_path)
    assert summary["zarr"] == client.name.split()[1]
    ours = zarr.open_group(str(shard_v2), mode="r")
    assert summary["episode_ends"] == ours["meta/episode_ends"][:].tolist() == [16, 32]
    assert summary["episode_ids"] == ["synthetic-000000", "synthetic-000001"]
    wrote = _episodes_by_id(shard_v2.parents[1])
    assert len(windows) == 2 * len(summary["keys"]) * 2 and "point_cloud" in summary["keys"]
    for (variant, key, i), window in windows.items():
        np.testing.assert_array_equal(window, wrote[summary["episode_ids"][i]][key], err_msg=f"{variant} {key}")


@pytest.mark.parametrize("client", CLIENT_PARAMS)
def test_export_of_three_shards_round_trips_through_replay_buffer(client, run3, tmp_path):
    out, _ = run3
    store = tmp_path / "dp3.zarr"
    done = export_dp3(out, store, keys=["all"])
    assert (done.shards, done.episodes, done.frames) == (3, 5, 80)
    summary, windows = run_contract(client, store, tmp_path / "client")
    assert summary["episode_ends"] == [16, 32, 48, 64, 80]
    assert summary["episode_ids"] == [f"synthetic-{i:06d}" for i in range(5)]  # episode order, once
    wrote = _episodes_by_id(out)
    assert sorted(summary["keys"]) == sorted(next(iter(wrote.values())))
    for (variant, key, i), window in windows.items():
        np.testing.assert_array_equal(window, wrote[summary["episode_ids"][i]][key], err_msg=f"{variant} {key}")


def test_export_defaults_attributes_and_resampling(run3, tmp_path):
    out, _ = run3
    root = zarr.open_group(str(export_dp3(out, tmp_path / "a.zarr").path), mode="r")
    assert root.metadata.zarr_format == 2
    assert sorted(k for k, _ in root["data"].members()) == ["action", "point_cloud", "state"]
    assert root["meta/episode_ids"].dtype.kind == "U" and root["meta/episode_ends"].dtype == np.int64
    assert root.attrs["action_dim"] == 8 and "gripper" in root.attrs["action_space"]
    assert root["data/point_cloud"].chunks[0] == 80  # min(100 frames, all frames)

    small = zarr.open_group(str(export_dp3(out, tmp_path / "b.zarr", n_points=32,
                                           keys=["point_cloud", "point_count_real", "state"]).path), mode="r")
    pc, real = small["data/point_cloud"][:], small["data/point_count_real"][:]
    assert pc.shape == (80, 32, 6) and small.attrs["n_points"] == 32
    full = np.concatenate([e["point_cloud"] for e in _episodes_by_id(out).values()])
    full_real = np.concatenate([e["point_count_real"] for e in _episodes_by_id(out).values()])
    for t in (0, 37, 79):  # every kept point is one of the frame's real stored points (xyz + rgb)
        stored = {tuple(p) for p in full[t, :full_real[t]].tolist()}
        assert {tuple(p) for p in pc[t].tolist()} <= stored
        assert real[t] == min(32, len(stored))
    # FPS spreads the points: the kept set spans most of the frame's extent
    ext = np.ptp(full[0, :full_real[0], :3], axis=0)
    assert np.all(np.ptp(pc[0, :, :3], axis=0) > 0.8 * ext)


def test_export_reads_only_committed_shards_and_fails_clearly(run3, tmp_path):
    out, _ = run3
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    Path(commit_path(copy, 1)).unlink()  # shard 1 is not committed (a crash before its marker)
    done = export_dp3(copy, tmp_path / "c.zarr")
    root = zarr.open_group(str(done.path), mode="r")
    assert [str(x) for x in root["meta/episode_ids"][:]] == ["synthetic-000000", "synthetic-000001",
                                                             "synthetic-000004"]
    with pytest.raises(ExportError, match="already exists"):
        export_dp3(copy, done.path)
    with pytest.raises(ExportError, match="unknown --keys"):
        export_dp3(copy, tmp_path / "d.zarr", keys=["pointcloud"])
    with pytest.raises(ExportError, match="more than the 96 points"):
        export_dp3(copy, tmp_path / "e.zarr", n_points=500)
    with pytest.raises(ExportError, match="no committed shard"):
        export_dp3(tmp_path / "nothing", tmp_path / "f.zarr")
    # an episode in two shards (two runs' shards copied together) is refused
    marker = json.loads(Path(commit_path(copy, 2)).read_text())
    shutil.copytree(copy / "pointclouds/shard-00000.zarr", copy / "pointclouds/shard-00007.zarr")
    Path(commit_path(copy, 7)).write_text(json.dumps({**marker, "shard": 7, "path": "pointclouds/shard-00007.zarr",
                                                "episode_ids": ["synthetic-000000", "synthetic-000001"]}))
    with pytest.raises(ExportError, match="synthetic-000000 is in both"):
        export_dp3(copy, tmp_path / "g.zarr")
    assert not list(tmp_path.glob(".*.tmp-*")) and not (tmp_path / "g.zarr").exists()


def test_cli_export_and_action_semantics_travel(run3, tmp_path, capsys):
    out, summary = run3
    assert main(["export", "dp3", str(out), "--to", str(tmp_path / "x.zarr"), "--n-points", "64"]) == 0
    assert "5 episodes, 80 frames from 3 shard(s)" in capsys.readouterr().out
    assert "appf export dp3" in summary.text() and "--zarr-format 2" in summary.text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["action"]["dim"] == 8 and "gripper" in manifest["action"]["space"]
    shard = zarr.open_group(str(out / "pointclouds/shard-00000.zarr"), mode="r")
    assert shard.attrs["action_dim"] == 8 and shard.attrs["action_space"] == manifest["action"]["space"]
    card = (out / "README.md").read_text()
    assert "appf export dp3" in card and "8 values per step" in card
    assert main(["inspect", str(out)]) == 0
    assert "action: 8 values per step" in capsys.readouterr().out
    assert main(["export", "dp3", str(out), "--to", str(tmp_path / "x.zarr")]) == 2  # exists: clear error
