"""SAM 2 refinement through the real transformers Sam2VideoModel (tiny random weights): frames in,
masks out, shapes and object ids right, seeds kept, windows with overlap cover every frame."""

from __future__ import annotations

import numpy as np
import pytest

from appf.annotators.masks.sam2 import Sam2VideoRefiner, window_ranges
from appf.transforms.mask_metrics import mask_iou
from mask_helpers import tiny_sam2_model, two_squares_video

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model():
    return tiny_sam2_model()


def test_window_ranges_cover_with_overlap():
    assert window_ranges(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert window_ranges(3, 64, 8) == [(0, 3)]
    with pytest.raises(ValueError, match="must exceed"):
        window_ranges(10, 4, 4)


def test_refine_end_to_end(model):
    rgb, gt = two_squares_video(T=3)  # fewer frames than the default overlap (8)
    refiner = Sam2VideoRefiner.from_model(model, weights="sam2.1-hiera-tiny")
    out = refiner.refine(rgb, {1: {2: gt[1][2]}, 2: {2: gt[2][2]}, 3: {}})
    assert set(out.masks) == {1, 2} and set(out.presence) == {1, 2}  # unseeded object 3 skipped
    for o in (1, 2):
        assert out.masks[o].shape == (3, 48, 64) and out.masks[o].dtype == bool
        assert out.presence[o].shape == (3,)
        assert np.all((out.presence[o] >= 0) & (out.presence[o] <= 1))
        # a mask prompt is SAM 2's output on its own frame (mask-as-output), whatever the weights
        assert mask_iou(out.masks[o][2], gt[o][2]) >= 0.9
    assert refiner.weights_id == "in-memory" and refiner.revision == "random-init"


def test_refine_in_windows_matches_frame_count_and_keeps_every_seed(model):
    rgb, gt = two_squares_video(T=7)
    refiner = Sam2VideoRefiner.from_model(model, window_frames=4, overlap_frames=1)
    seeds = {1: {0: gt[1][0], 5: gt[1][5]}}
    out = refiner.refine(rgb, seeds)
    assert out.masks[1].shape == (7, 48, 64)
    for f in (0, 5):
        assert mask_iou(out.masks[1][f], gt[1][f]) >= 0.9
    assert out.presence[1].min() > 0  # every frame was produced by some window
