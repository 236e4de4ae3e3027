"""The classical backends (no weights) against the synthetic scenes' exact depth, the stereo
pipeline stages, and the whole Beam job with `depth: sgbm`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from appf.annotators.depth.classical_stereo import (
    StereoParams,
    classical_disparity,
    fill_background,
    occlusion_masks,
    plain_sgbm_disparity,
    sgbm_left,
)
from appf.annotators.depth.evaluate import simulate_sensor_holes
from appf.annotators.depth.sensor_fill import complete_depth, dense_prompt
from appf.annotators.depth.units import depth_m_to_disparity
from appf.annotators.protocols import DepthBatch
from appf.annotators.registry import make_depth_annotator
from appf.pipelines.sources.synthetic import SyntheticSource
from appf.transforms.depth_metrics import depth_metrics, disparity_metrics


@pytest.fixture(scope="module")
def stereo_cam():
    src = SyntheticSource(episodes=1, steps=16, height=240, width=320, seed=3)
    return src.read(src.list_refs()[0]).cameras["front"]


def test_sgbm_backend_on_exact_synthetic_depth(stereo_cam):
    cam = stereo_cam
    frames = [0, 9]
    batch = DepthBatch(rgb=cam.rgb[frames], K=cam.intrinsics, rgb_right=cam.rgb_right[frames],
                       baseline_m=cam.baseline_m, where="synthetic")
    result = make_depth_annotator("sgbm").annotate(batch)
    assert result.depth_m.shape == (2, 240, 320) and result.depth_m.dtype == np.float32
    np.testing.assert_array_equal(result.K, cam.intrinsics)
    fx, B = cam.intrinsics[0, 0], cam.baseline_m
    for i, t in enumerate(frames):
        d = depth_metrics(result.depth_m[i], cam.depth[t])
        assert d["coverage"] >= 0.85, d
        assert d["abs_rel"] <= 0.02 and d["delta1"] >= 0.98, d
        disp = disparity_metrics(depth_m_to_disparity(result.depth_m[i], fx, B),
                                 depth_m_to_disparity(cam.depth[t], fx, B))
        assert disp["bad2"] <= 0.02, disp


def test_ours_beats_plain_sgbm_on_synthetic(stereo_cam):
    cam, t = stereo_cam, 5
    fx, B = cam.intrinsics[0, 0], cam.baseline_m
    gt = depth_m_to_disparity(cam.depth[t], fx, B)
    max_disp = float(np.ceil(gt.max()))
    ours = disparity_metrics(classical_disparity(cam.rgb[t], cam.rgb_right[t], max_disp), gt)
    plain = disparity_metrics(plain_sgbm_disparity(cam.rgb[t], cam.rgb_right[t], max_disp), gt)
    assert ours["coverage"] > plain["coverage"]
    assert ours["bad2_all"] < plain["bad2_all"]
    assert ours["epe_px"] < plain["epe_px"]


def _step_scene() -> tuple[np.ndarray, np.ndarray]:
    """Two rows of a fronto-parallel step: background d=4 left of column 20, foreground d=10 from
    column 20 on (nearer, so it hides the 10 - 4 = 6 background columns 14..19 from the right
    camera). Returns (true disparity, the map a matcher leaves: 0 where the left view cannot be
    matched: columns 0..3 see left of the right image, 14..19 are occluded, and column 30 of the
    second row is a plain mismatch inside the foreground)."""
    true = np.where(np.arange(40) < 20, 4.0, 10.0).astype(np.float32)[None].repeat(2, axis=0)
    seen = true.copy()
    seen[:, :4] = 0
    seen[:, 14:20] = 0
    seen[1, 30] = 0
    return true, seen


def test_occlusion_masks_on_a_step_scene_are_exact():
    true, seen = _step_scene()
    occluded, outside = occlusion_masks(seen, tolerance_px=1.0)
    expect_occ = np.zeros_like(occluded)
    expect_occ[:, 14:20] = True
    expect_out = np.zeros_like(outside)
    expect_out[:, :4] = True
    np.testing.assert_array_equal(occluded, expect_occ)
    np.testing.assert_array_equal(outside, expect_out)  # column 4 maps to right column 0: inside
    assert not occluded[1, 30] and not outside[1, 30]  # the mismatch is neither
    # the background fill restores both classes exactly and leaves other pixels alone
    filled = fill_background(seen, occluded | outside)
    np.testing.assert_array_equal(filled[0], true[0])
    assert filled[1, 30] == 0 and np.array_equal(np.delete(filled[1], 30), np.delete(true[1], 30))


def test_occlusion_masks_need_a_nearer_surface_beyond_the_tolerance():
    true, seen = _step_scene()
    near = np.where(seen >= 10, 4.5, seen).astype(np.float32)  # a 0.5 px step: no occluder
    occluded, _ = occlusion_masks(near, tolerance_px=1.0)
    assert not occluded.any()
    empty_occ, empty_out = occlusion_masks(np.zeros((3, 5), np.float32))
    assert not empty_occ.any() and not empty_out.any()


def test_columns_outside_the_right_view_take_the_plane_disparity():
    """A textured fronto-parallel plane at disparity 8: the 8 leftmost left columns are not in the
    right view. The matcher's hits there (in the left padding) are dropped, and the columns are
    filled with the row's background, the plane's disparity."""
    d, width = 8, 120
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (60, width + d, 3)).astype(np.uint8)
    left, right = np.ascontiguousarray(texture[:, :width]), np.ascontiguousarray(texture[:, d:])
    raw = sgbm_left(left.mean(axis=2).astype(np.uint8), right.mean(axis=2).astype(np.uint8), 16,
                    StereoParams())
    assert (raw[:, :d] > 0).mean() < 0.05
    out = classical_disparity(left, right, 15.0)
    strip = out[:, :d]
    assert ((strip > 0) & (np.abs(strip - d) <= 1.0)).mean() >= 0.95
    assert (np.abs(out[:, d:][out[:, d:] > 0] - d) <= 1.0).mean() >= 0.99


def test_stereo_stages_each_help(stereo_cam):
    """Coverage grows with the fill stages, and sub-pixel refinement lowers the end-point error."""
    cam, t = stereo_cam, 12
    fx, B = cam.intrinsics[0, 0], cam.baseline_m
    gt = depth_m_to_disparity(cam.depth[t], fx, B)
    run = lambda **kw: disparity_metrics(  # noqa: E731
        classical_disparity(cam.rgb[t], cam.rgb_right[t], 40.0, StereoParams(**kw)), gt)
    bare = run(subpixel_radius=0)
    filled = run(subpixel_radius=0, fill_occlusions=True, max_hole_fraction=3e-4)
    assert filled["coverage"] > bare["coverage"]
    assert run()["epe_px"] < bare["epe_px"]


def test_sgbm_needs_a_stereo_camera(stereo_cam):
    batch = DepthBatch(rgb=stereo_cam.rgb[:1], K=stereo_cam.intrinsics, where="ep cam")
    with pytest.raises(ValueError, match="needs a rectified stereo camera; missing rgb_right"):
        make_depth_annotator("sgbm").annotate(batch)


def test_sensor_completion_keeps_measurements_and_fills_edge_aware(stereo_cam):
    cam = stereo_cam
    for t in (2, 14):
        gt = np.asarray(cam.depth[t])
        sensor = simulate_sensor_holes(gt, seed=t)
        holes = (sensor <= 0) & (gt > 0)
        assert holes.mean() > 0.05
        out = complete_depth(sensor, cam.rgb[t])
        np.testing.assert_array_equal(out[sensor > 0], sensor[sensor > 0])
        ours = depth_metrics(np.where(holes, out, 0), np.where(holes, gt, 0))
        idx = ndi.distance_transform_edt(sensor <= 0, return_distances=False, return_indices=True)
        nearest = depth_metrics(np.where(holes, sensor[tuple(idx)], 0), np.where(holes, gt, 0))
        assert ours["coverage"] == pytest.approx(1.0)
        assert ours["abs_rel"] < 0.05
        assert ours["abs_rel"] <= nearest["abs_rel"]


def test_sensor_fill_backend_and_dense_prompt(stereo_cam):
    cam = stereo_cam
    sensor = np.stack([simulate_sensor_holes(cam.depth[t], seed=t) for t in (0, 1)])
    result = make_depth_annotator("sensor_fill").annotate(
        DepthBatch(rgb=cam.rgb[:2], K=cam.intrinsics, sensor_depth=sensor, where="rgbd"))
    assert result.depth_m.shape == sensor.shape
    assert (result.depth_m > 0).mean() > (sensor > 0).mean()
    prompt = dense_prompt(sensor[0], cam.rgb[0])
    assert (prompt > 0).all()
    with pytest.raises(ValueError, match="no valid pixel"):
        dense_prompt(np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8), "ep f0")


def test_reannotate_job_with_sgbm(tmp_path):
    """The whole job (read -> RunInference depth -> point clouds -> shards) with --depth sgbm:
    the shard records the backend and every episode is written."""
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(
        source="synthetic", out=str(tmp_path / "out"), depth="sgbm", n_points=64,
        episodes_per_shard=2, progress_every_s=0, batch_frames=4,
        source_options={"episodes": 1, "steps": 16, "height": 96, "width": 128, "seed": 2}))
    summary = run_job(cfg, local_options(1))
    assert summary.failures == 0, summary.text()
    assert summary.episodes == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["provenance"]["depth_backend"] == "sgbm"
    shard = zarr.open_group(str(tmp_path / "out" / manifest["shards"][0]["path"]), mode="r")
    per_episode = shard.attrs["episode_provenance"]
    assert [p["depth"] for p in per_episode.values()] == [["sgbm"]]
