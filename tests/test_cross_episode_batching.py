"""Frames of several episodes share one depth batch; results equal per-episode annotation, and a
bad episode is charged only to itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from appf.annotators.apply import annotate_episode_depth
from appf.annotators.apply_across import annotate_episodes_depth, cross_batches
from appf.annotators.registry import make_depth_annotator
from appf.pipelines.sources.synthetic import SyntheticSource


class CountingAnnotator:
    """A real annotator with its batch sizes recorded (the test's observation point)."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []
        self.name, self.weights_id, self.revision = inner.name, inner.weights_id, inner.revision

    def load(self) -> None:
        self.inner.load()

    def annotate(self, batch):
        self.batches.append(batch.rgb.shape[0])
        return self.inner.annotate(batch)


def episodes(lengths: list[int], h: int = 48, w: int = 64):
    src = SyntheticSource(episodes=len(lengths), steps=16, height=h, width=w, seed=3)
    out = []
    for ref, T in zip(src.list_refs(), lengths):
        ep = src.read(ref)
        cut = slice(0, T)
        steps = dataclasses.replace(ep.steps, **{f.name: getattr(ep.steps, f.name)[cut]
                                                 for f in dataclasses.fields(ep.steps)})
        cams = {n: dataclasses.replace(c, rgb=c.rgb[cut], rgb_right=c.rgb_right[cut],
                                       depth=c.depth[cut], segmentation=c.segmentation[cut])
                for n, c in ep.cameras.items()}
        out.append(dataclasses.replace(ep, steps=steps, cameras=cams))
    return out


def test_cross_batches_span_episode_boundaries():
    lengths = {(0, "c"): 3, (1, "c"): 5, (2, "c"): 1}
    got = list(cross_batches([(0, "c"), (1, "c"), (2, "c")], lengths, 4))
    assert got == [[(0, "c", 0, 3), (1, "c", 0, 1)], [(1, "c", 1, 5)], [(2, "c", 0, 1)]]
    assert list(cross_batches([(0, "c")], {(0, "c"): 0}, 4)) == []


@pytest.mark.parametrize("backend", ["sgbm", "ground_truth"])
def test_batched_across_episodes_equals_one_episode_at_a_time(backend):
    eps = episodes([3, 5, 2])
    counting = CountingAnnotator(make_depth_annotator(backend))
    counting.load()
    together = annotate_episodes_depth(eps, counting, batch_frames=4)
    assert counting.batches == [4, 4, 2]  # 10 frames: full batches across episode ends
    for ep, got in zip(eps, together):
        alone = annotate_episode_depth(ep, counting.inner, batch_frames=4)
        for name, cam in alone.cameras.items():
            np.testing.assert_array_equal(got.cameras[name].depth, cam.depth)
            np.testing.assert_array_equal(got.cameras[name].intrinsics, cam.intrinsics)
            assert got.cameras[name].depth_provenance == cam.depth_provenance == backend


def test_bad_episode_fails_alone_and_its_batch_mates_succeed():
    eps = episodes([3, 3, 3])
    cam = eps[1].cameras["front"]
    bad_depth = np.array(cam.depth, copy=True)
    bad_depth[2, 5, 5] = np.nan  # the ground-truth backend refuses NaN depth
    eps[1] = dataclasses.replace(eps[1], cameras={"front": dataclasses.replace(cam, depth=bad_depth)})
    gt = make_depth_annotator("ground_truth")
    got = annotate_episodes_depth(eps, gt, batch_frames=4)
    assert isinstance(got[1], ValueError) and eps[1].episode_id in str(got[1])
    for i in (0, 2):
        np.testing.assert_array_equal(got[i].cameras["front"].depth,
                                      np.asarray(eps[i].cameras["front"].depth))


def test_uncalibrated_camera_is_not_batched_with_others():
    eps = episodes([2, 2])
    cam = eps[0].cameras["front"]
    eps[0] = dataclasses.replace(eps[0], cameras={"front": dataclasses.replace(
        cam, intrinsics=None, intrinsics_unknown=True)})
    counting = CountingAnnotator(make_depth_annotator("ground_truth"))
    got = annotate_episodes_depth(eps, counting, batch_frames=4)
    assert isinstance(got[0], Exception)  # ground truth cannot estimate K: its own error
    assert counting.batches == [2, 2]  # each episode alone, never one batch of 4
    assert not isinstance(got[1], Exception)
