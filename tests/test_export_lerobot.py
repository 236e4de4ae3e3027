"""`appf export lerobot`: a run's committed episodes as a LeRobot v3.0 dataset that the real
lerobot 0.4.4 `LeRobotDataset` loads, and the round trip appf -> LeRobot -> appf (lerobot source)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from appf.launch.cli import main
from appf.launch.export_lerobot import ExportError, export_lerobot
from appf.pipelines.sources import make_source
from fixtures_lerobot import read_with_lerobot, requires_lerobot
from pipeline_helpers import SMALL_SOURCE, run_local, small_config
from test_source_lerobot import assert_frames_match

# The synthetic scene changes little from one frame to the next: at LeRobot's CRF 30 neighbouring
# frames are closer than the coding error, so the export runs at CRF 1 to test index alignment.
CRF = 1
MAX_ERR = 4.0  # mean abs error, 8-bit levels (yuv420p chroma subsampling of the textured frames)
FAILED_INDEX = 1  # one episode fails at read: it is in no shard and must not be exported


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_lerobot")
    cfg = small_config(tmp / "run", source="faulty_source:FaultySource",
                       source_options={**SMALL_SOURCE, "faults": {FAILED_INDEX: "raise_read"}})
    run_local(cfg)
    assert main(["export", "lerobot", str(tmp / "run"), "--to", str(tmp / "lerobot"), "--crf", str(CRF)]) == 0
    source = make_source(cfg.source, cfg.source_options)
    originals = [source.read(r) for r in source.list_refs() if r.index != FAILED_INDEX]
    return tmp, originals


def shard_arrays(run) -> dict[str, np.ndarray]:
    """data/* of every shard concatenated in shard order (what export must have written)."""
    shards = sorted((run / "pointclouds").glob("shard-*.zarr"))
    groups = [zarr.open_group(str(s), mode="r") for s in shards]
    return {k: np.concatenate([g[f"data/{k}"][:] for g in groups]) for k in ("state", "action", "point_cloud")}


@requires_lerobot
def test_lerobot_dataset_loads_the_export(exported):
    tmp, originals = exported
    meta, items = read_with_lerobot(tmp / "lerobot", tmp)
    assert meta["codebase_version"] == "v3.0" and meta["total_episodes"] == len(originals) == 3
    lengths = [ep.num_steps for ep in originals]
    assert meta["num_frames"] == sum(lengths)
    assert meta["tasks"] == [ep.language_instruction for ep in originals for _ in range(ep.num_steps)]
    expected = shard_arrays(tmp / "run")
    np.testing.assert_array_equal(items["observation.state"], expected["state"])
    np.testing.assert_array_equal(items["action"], expected["action"])
    np.testing.assert_array_equal(items["observation.point_cloud"], expected["point_cloud"])
    np.testing.assert_array_equal(items["episode_index"], np.repeat(np.arange(3), lengths))
    # frames decoded by lerobot (torchcodec, at timestamps) = the source's frames, in order
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for e, ep in enumerate(originals):
        decoded = items["observation.images.front"][starts[e]:starts[e + 1]]
        assert_frames_match(decoded, np.asarray(ep.cameras["front"].rgb), MAX_ERR)


def test_round_trip_appf_lerobot_appf(exported):
    tmp, originals = exported
    src = make_source("lerobot", {"input": str(tmp / "lerobot")})  # layout detected: "appf"
    assert src.layout["ee_pose_format"] == "appf_state"
    refs = src.list_refs()
    assert len(refs) == len(originals)
    for ref, orig in zip(refs, originals):
        ep = src.read(ref)
        assert ep.language_instruction == orig.language_instruction
        assert ep.num_steps == orig.num_steps and ep.control_hz == orig.control_hz
        np.testing.assert_allclose(ep.steps.ee_pose, orig.steps.ee_pose, atol=1e-6)  # float32 in the shard
        np.testing.assert_allclose(ep.steps.gripper, orig.steps.gripper, atol=1e-6)
        np.testing.assert_allclose(ep.steps.action, orig.steps.action, atol=1e-6)
        np.testing.assert_allclose(ep.steps.timestamp, orig.steps.timestamp, atol=1e-6)
        decoded = np.asarray(ep.cameras["front"].rgb)
        assert_frames_match(decoded, np.asarray(orig.cameras["front"].rgb), MAX_ERR)


def test_export_refuses_an_existing_dataset_and_an_unfinished_run(exported, tmp_path):
    tmp, _ = exported
    with pytest.raises(FileExistsError, match="already holds a LeRobot dataset"):
        export_lerobot(tmp / "run", tmp / "lerobot")
    with pytest.raises(ExportError, match="manifest.json missing"):
        export_lerobot(tmp_path / "no_run", tmp_path / "out")


def test_export_names_an_episode_the_source_no_longer_matches(exported, tmp_path):
    """The source re-read for images must be the one the run read: a different one is refused."""
    tmp, _ = exported
    run = tmp / "run"
    with pytest.raises(ExportError, match=r"episode .*: the shard has 16 frames, the source 20"):
        export_lerobot(run, tmp_path / "out", source_overrides={"steps": 20})


def test_reannotate_a_lerobot_dataset(tmp_path):
    """`appf reannotate --source lerobot` runs the whole Beam job on a LeRobot dataset (v2.1, depth
    from a dataset feature, calibration from source options): every frame gets a point cloud."""
    import json

    from fixtures_lerobot import EPISODES, H, W, write_v21

    write_v21(tmp_path / "d", extras=True)
    K = [[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]]
    job = {"source": "lerobot", "depth": "ground_truth", "masks": "none", "n_points": 64,
           "source_options": {"input": str(tmp_path / "d"), "cameras": ["wrist_left"],
                              "depth_keys": {"wrist_left": "observation.depth.wrist_left"},
                              "intrinsics": {"wrist_left": K}, "extrinsics": {"wrist_left": np.eye(4).tolist()}}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main(["reannotate", "--config", str(tmp_path / "job.json"), "--out", str(tmp_path / "run")]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["episodes"] == 2 and manifest["counts"]["failures"] == 0
    assert manifest["counts"]["frames"] == sum(n for n, _ in EPISODES)
    clouds = shard_arrays(tmp_path / "run")["point_cloud"]
    # depth 0.5 m + column px (mm) at frame 0 of episode 0, identity extrinsics: z in [0.5, 0.7] m
    assert 0.49 < clouds[..., 2].min() and clouds[..., 2].max() < 0.75
