"""mask_mode through the whole job: point clouds keep only the labels the mode asks for (labels in
data/point_label)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from appf.annotators.protocols import LABEL_BACKGROUND, LABEL_ROBOT, LABEL_TASK_OBJECT
from pipeline_helpers import run_local, small_config


@pytest.mark.parametrize("mode, allowed", [
    ("foreground", {LABEL_ROBOT, LABEL_TASK_OBJECT}),
    ("no_robot", {LABEL_BACKGROUND, LABEL_TASK_OBJECT}),
])
def test_mask_mode_keeps_only_its_labels(tmp_path, mode, allowed):
    cfg = small_config(tmp_path / mode, mask_mode=mode, crop=[[-1, -1, -0.5], [2, 1, 1.5]],
                       source_options={"episodes": 1, "steps": 16, "height": 96, "width": 128})
    summary = run_local(cfg)
    assert summary.failures == 0, summary.failures_by_stage
    root = zarr.open_group(str(tmp_path / mode / "pointclouds/shard-00000.zarr"), mode="r")
    labels = root["data/point_label"][:]
    assert set(np.unique(labels)) <= allowed
    if mode == "foreground":  # the robot is in view in every frame of the synthetic episode
        assert (labels == LABEL_ROBOT).any(axis=1).all()
    assert root.attrs["mask_mode"] == mode


def test_stored_masks_are_the_ground_truth_labels_with_provenance(tmp_path):
    import json

    from appf.annotators.masks.ground_truth import GroundTruthMasker
    from appf.annotators.apply import mask_batch
    from appf.launch.validate_output import validate_output
    from appf.pipelines.sources.synthetic import SyntheticSource

    options = {"episodes": 2, "steps": 16, "height": 48, "width": 64}
    cfg = small_config(tmp_path / "out", store_masks=True, source_options=options)
    summary = run_local(cfg)
    assert summary.failures == 0 and summary.shards == 1
    root = zarr.open_group(str(tmp_path / "out/pointclouds/shard-00000.zarr"), mode="r")
    stored = root["masks/front"]
    assert stored.shape == (32, 48, 64) and stored.dtype == np.uint8
    assert stored.compressors  # Blosc like every array of the shard
    src = SyntheticSource(**options)
    expected = np.concatenate([GroundTruthMasker().masks(mask_batch(src.read(r), "front")).labels
                               for r in src.list_refs()])
    assert np.array_equal(stored[:], expected)
    assert root.attrs["mask_provenance"] == "ground_truth" and root.attrs["store_masks"] is True
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["provenance"]["mask_backend"] == "ground_truth"
    assert manifest["provenance"]["store_masks"] is True
    assert validate_output(tmp_path / "out") == []
