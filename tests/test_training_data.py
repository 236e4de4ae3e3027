"""Shard reading, windows, normalisation, guidance and batches of the expert trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from appf.training.config import ExpertConfig
from appf.training.dataset import ExpertWindowDataset, fit_normalizer
from appf.training.errors import TrainingError
from appf.training.guidance import add_guidance_noise, episode_splines
from appf.training.normalizer import Normalizer
from appf.training.sampler import StepBatchSampler
from appf.training.shards import ShardSet, find_shards
from appf.training.windows import window_frames
from test_training_helpers import copy_without_point_clouds, job_out, job_out_v2, tiny_config  # noqa: F401


def test_reads_every_shard_of_a_job_in_order(job_out):
    paths = find_shards(job_out)
    assert [p.name for p in paths] == ["shard-00000.zarr", "shard-00001.zarr"]
    s = ShardSet(paths)
    raw = [zarr.open_group(str(p), mode="r") for p in paths]
    ends = [np.asarray(g["meta/episode_ends"][...]) for g in raw]
    assert s.n_episodes == sum(e.size for e in ends)
    assert s.n_frames == sum(int(e[-1]) for e in ends)
    np.testing.assert_array_equal(s.lowdim["action"],
                                  np.concatenate([g["data/action"][...] for g in raw]))
    # Second shard's first episode starts right after the first shard's frames.
    assert s.episode_starts[len(ends[0])] == ends[0][-1]
    assert s.episode_ids == [str(x) for g in raw for x in g["meta/episode_ids"][...]]
    assert set(s.zarr_formats) == {3}


def test_zarr_format_2_shards_read_like_format_3(job_out, job_out_v2):
    v2 = ShardSet(find_shards(job_out_v2), need_point_cloud=True)
    v3 = ShardSet(find_shards(job_out)[:1], need_point_cloud=True)
    assert v2.zarr_formats == [2]
    for key in v3.lowdim:
        np.testing.assert_array_equal(v2.lowdim[key], v3.lowdim[key], err_msg=key)
    np.testing.assert_array_equal(v2.all_point_clouds(), v3.all_point_clouds())


def test_point_clouds_are_read_per_frame_across_shards(job_out):
    s = ShardSet(find_shards(job_out), need_point_cloud=True)
    frames = np.array([s.n_frames - 1, 0, 30, 30, 5])
    got = s.point_clouds(frames)
    every = s.all_point_clouds()
    np.testing.assert_array_equal(got, every[frames])
    assert got.shape == (5, s.spec.n_points, 3)


def test_pretraining_data_never_reads_point_clouds(job_out, tmp_path):
    """Phase-1 data works on shards whose point clouds are deleted; phase 2 says what is missing."""
    stripped = copy_without_point_clouds(job_out, tmp_path)
    cfg = tiny_config()
    s = ShardSet(find_shards(stripped))
    ds = ExpertWindowDataset(s, cfg, fit_normalizer(s, use_point_cloud=False))
    batch = ds[np.arange(8)]
    assert set(batch) == {"state", "action", "guidance"}
    with pytest.raises(TrainingError, match="point_cloud"):
        ShardSet(find_shards(stripped), need_point_cloud=True)


def test_missing_shards_give_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        find_shards(tmp_path / "nope")
    with pytest.raises(TrainingError, match="no \\*.zarr shard"):
        find_shards(tmp_path)


def test_windows_pad_at_episode_edges_the_replay_buffer_way():
    starts, ends = np.array([0, 10]), np.array([10, 30])
    frames, eps = window_frames(starts, ends, horizon=16, pad_before=1, pad_after=7)
    # Episode of length L gives L - horizon + pad_after + pad_before + 1 windows (if positive).
    assert (eps == 0).sum() == 10 - 16 + 7 + 1 + 1
    assert (eps == 1).sum() == 20 - 16 + 7 + 1 + 1
    for f, e in zip(frames, eps):
        lo, hi = starts[e], ends[e] - 1
        assert f.min() >= lo and f.max() <= hi           # never crosses into a neighbour
        assert np.all(np.diff(f) >= 0) and np.all(np.diff(f) <= 1)
    first = frames[eps == 1][0]
    assert first[0] == first[1] == 10                    # obs step before the start repeats frame 0
    last = frames[eps == 1][-1]
    assert np.all(last[-8:] == 29)        # the last frame, then 7 padded action steps repeating it
    assert last[-9] == 28


def test_normaliser_maps_to_unit_range_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.uniform(-3, 5, 500), rng.uniform(0, 0.01, 500), np.full(500, 7.0)])
    n = Normalizer()
    n.fit("x", data)
    y = n.normalize("x", data)
    np.testing.assert_allclose(y[:, :2].min(0), -1, atol=1e-12)
    np.testing.assert_allclose(y[:, :2].max(0), 1, atol=1e-12)
    np.testing.assert_allclose(y[:, 2], 0.0)             # a constant channel is centred, not blown up
    n.save(tmp_path / "n.json")
    m = Normalizer.load(tmp_path / "n.json")
    np.testing.assert_allclose(m.unnormalize("x", m.normalize("x", data)), data, atol=1e-9)
    t = torch.as_tensor(data, dtype=torch.float32)
    np.testing.assert_allclose(m.normalize("x", t).numpy(), y, atol=1e-5)
    with pytest.raises(TrainingError, match="channels"):
        m.normalize("x", data[:, :2])


def test_guidance_is_the_keyframe_spline_at_the_window_end(job_out):
    s = ShardSet(find_shards(job_out))
    cfg = tiny_config()
    ds = ExpertWindowDataset(s, cfg, fit_normalizer(s, False))
    ld = s.lowdim
    for w in (0, len(ds) // 2, len(ds) - 1):
        e = ds.episodes[w]
        a, b = s.episode_starts[e], s.episode_ends[e]
        spline = episode_splines(ld["ee_pose"][a:b], ld["timestamp"][a:b], ld["keyframe"][a:b])[0]
        t_end = ld["timestamp"][ds.frames[w, -1]]
        np.testing.assert_allclose(ds.raw_guidance[w], spline(t_end), atol=1e-9)
    # At a keyframe the spline passes through the recorded pose.
    e = 0
    a, b = s.episode_starts[e], s.episode_ends[e]
    k = a + int(np.flatnonzero(ld["keyframe"][a:b])[0])
    spline = episode_splines(ld["ee_pose"][a:b], ld["timestamp"][a:b], ld["keyframe"][a:b])[0]
    np.testing.assert_allclose(spline(ld["timestamp"][k])[:3], ld["ee_pose"][k, 0, :3], atol=1e-6)
    # The batch's guidance is the normalised clean spline pose.
    batch = ds[[3]]
    np.testing.assert_allclose(batch["guidance"].numpy()[0],
                               ds.normalizer.normalize("guidance", ds.raw_guidance[3]), atol=1e-5)


@pytest.mark.parametrize("std", [0.1, 0.3])
def test_guidance_noise_has_the_configured_scale(std):
    clean = torch.zeros(20000, 7)
    noisy = add_guidance_noise(clean, std, torch.Generator().manual_seed(0))
    d = (noisy - clean).numpy()
    assert abs(d.std() - std) < 0.03 * std
    assert abs(d.mean()) < 0.05 * std
    assert add_guidance_noise(clean, 0.0) is clean


def test_batches_have_the_documented_shapes(job_out):
    s = ShardSet(find_shards(job_out), need_point_cloud=True)
    cfg = tiny_config(phase="finetune")
    ds = ExpertWindowDataset(s, cfg, fit_normalizer(s, True))
    b = ds[np.arange(5)]
    assert b["state"].shape == (5, cfg.n_obs_steps, 8)
    assert b["action"].shape == (5, cfg.horizon, 8)
    assert b["guidance"].shape == (5, 7)
    assert b["point_cloud"].shape == (5, cfg.n_obs_steps, 128, 3)
    one = ds[2]
    assert one["state"].shape == (cfg.n_obs_steps, 8)
    for key in b:
        assert b[key].dtype == torch.float32 and float(b[key].abs().max()) <= 1.0 + 1e-5
    lazy = ExpertWindowDataset(s, cfg.replace(preload_point_clouds=False), ds.normalizer)
    torch.testing.assert_close(lazy[np.arange(5)]["point_cloud"], b["point_cloud"])


def test_too_short_episodes_say_what_to_change(job_out):
    s = ShardSet(find_shards(job_out))
    cfg = ExpertConfig(horizon=64, n_action_steps=8, down_dims=[16, 32], n_groups=4)
    with pytest.raises(TrainingError, match="lower horizon"):
        ExpertWindowDataset(s, cfg, fit_normalizer(s, False))
    # The fixture's episodes have 24 steps: horizon 32 (pads 1 + 7) still gives one window each,
    # horizon 36 gives none and the message names the real minimum, 36 - 1 - 7 = 28 steps.
    norm = fit_normalizer(s, False)
    ok = ExpertWindowDataset(s, cfg.replace(horizon=32), norm)
    assert len(ok) == s.n_episodes
    with pytest.raises(TrainingError, match="= 28 steps"):
        ExpertWindowDataset(s, cfg.replace(horizon=36), norm)


def test_windows_of_episodes_shorter_than_the_horizon():
    """SequenceSampler: starts -pad_before .. L - horizon + pad_after, padded on both sides."""
    frames, eps = window_frames(np.array([0, 8]), np.array([8, 15]), horizon=16, pad_before=1, pad_after=7)
    assert eps.tolist() == [0]                           # L = 8 gives L - 7 = 1 window, L = 7 none
    np.testing.assert_array_equal(frames[0], [0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7])


def test_batch_sampler_is_resumable_and_splits_ranks():
    full = list(StepBatchSampler(n=10, batch_size=4, steps=12, seed=3))
    resumed = list(StepBatchSampler(n=10, batch_size=4, steps=12, seed=3, start_step=5))
    assert len(resumed) == 7
    for a, b in zip(full[5:], resumed):
        np.testing.assert_array_equal(a, b)
    # Within one epoch every index appears once; batches larger than the data wrap epochs.
    np.testing.assert_array_equal(np.sort(np.concatenate(full)[:10]), np.arange(10))
    big = StepBatchSampler(n=3, batch_size=7, steps=1).batch(0)
    assert np.bincount(big, minlength=3).min() >= 2
    r0 = StepBatchSampler(n=8, batch_size=2, steps=2, rank=0, world_size=2).batch(0)
    r1 = StepBatchSampler(n=8, batch_size=2, steps=2, rank=1, world_size=2).batch(0)
    assert not set(r0) & set(r1)


def test_guidance_quaternions_follow_the_state_hemisphere():
    from appf.training.guidance import align_quaternion_signs

    q = np.array([0.96, -0.26, 0.0, 0.05])
    q /= np.linalg.norm(q)
    state = np.concatenate([[0.1, 0.2, 0.3], q, [1.0], [0.0, 0.0, 0.0], [0, 0, 0, 1.0], [0.0]])  # 2 arms
    guidance = np.stack([np.concatenate([[1, 2, 3], -q, [4, 5, 6], [0, 0, 0, 1.0]]),
                         np.concatenate([[1, 2, 3], q, [4, 5, 6], [0, 0, 0, -1.0]])])
    out = align_quaternion_signs(guidance, state)
    np.testing.assert_array_equal(out[:, 3:7], [q, q])
    np.testing.assert_array_equal(out[:, 10:14], [[0, 0, 0, 1.0]] * 2)
    np.testing.assert_array_equal(out[:, [0, 1, 2, 7, 8, 9]], guidance[:, [0, 1, 2, 7, 8, 9]])
