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
