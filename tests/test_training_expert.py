"""The APPF expert: overfitting, prediction, the two phases, checkpoints, resume, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from appf.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from appf.training.dataset import ExpertWindowDataset
from appf.training.errors import TrainingError
from appf.training.metrics import read_metrics
from appf.training.normalizer import Normalizer
from appf.training.policy import ExpertPolicy
from appf.training.shards import ShardSet, find_shards
from appf.training.trainer import train_expert
from test_training_helpers import (PRETRAIN_STEPS, finetune_run, job_out, pretrain_run,  # noqa: F401
                                   tiny_config)

# predict() must reproduce the training actions to within this mean absolute error, in
# normalised units (channels scaled to [-1, 1]): 0.1 = 5 % of each channel's range.
PREDICT_TOLERANCE = 0.1


def _windows(policy: ExpertPolicy, job, use_point_cloud: bool = False):
    shards = ShardSet(find_shards(job), need_point_cloud=use_point_cloud)
    ds = ExpertWindowDataset(shards, policy.cfg, policy.normalizer)
    idx = np.arange(len(ds))
    return ds, ds[idx], idx


def _raw_obs(policy: ExpertPolicy, batch, with_pc: bool = False) -> dict:
    obs = {"state": policy.normalizer.unnormalize("state", batch["state"]).numpy()}
    if with_pc:
        obs["point_cloud"] = policy.normalizer.unnormalize("point_cloud", batch["point_cloud"]).numpy()
    return obs


def test_pretraining_loss_falls_tenfold(pretrain_run):
    losses = [m["loss"] for m in read_metrics(pretrain_run)]
    steps = [m["step"] for m in read_metrics(pretrain_run)]
    assert steps == list(range(10, PRETRAIN_STEPS + 1, 10))
    first, last = np.mean(losses[:2]), np.mean(losses[-3:])
    assert first / last >= 10, f"loss fell only {first / last:.1f}x ({first:.4f} -> {last:.4f})"
    m = read_metrics(pretrain_run)[-1]
    assert m["samples_per_s"] > 0 and m["phase"] == "pretrain"
    assert any((pretrain_run / "tensorboard").iterdir())


def test_predict_reproduces_the_training_actions(pretrain_run, job_out):
    policy = ExpertPolicy.load(pretrain_run)
    ds, batch, idx = _windows(policy, job_out)
    pred = policy.predict(_raw_obs(policy, batch), ds.raw_guidance[idx], full_horizon=True)
    assert pred.shape == batch["action"].shape
    err = np.abs(policy.normalizer.normalize("action", pred.astype(np.float32)) - batch["action"].numpy())
    assert err.mean() < PREDICT_TOLERANCE, f"mean |error| {err.mean():.3f} normalised units"
    # The executable part: n_action_steps from the current (last observed) step on.
    one = policy.predict(_raw_obs(policy, ds[[0]]), ds.raw_guidance[0:1])
    assert one.shape == (1, policy.cfg.n_action_steps, policy.spec.action_dim)
    single = policy.predict({"state": _raw_obs(policy, ds[[0]])["state"][0]}, ds.raw_guidance[0])
    np.testing.assert_allclose(single, one[0], atol=1e-5)


def test_phase_1_output_does_not_depend_on_the_point_cloud(pretrain_run, job_out):
    policy = ExpertPolicy.load(pretrain_run)
    ds, batch, idx = _windows(policy, job_out)
    obs = _raw_obs(policy, ds[[5]])
    rng = np.random.default_rng(0)
    a = policy.predict({**obs, "point_cloud": rng.uniform(0, 1, (1, 2, 128, 3))}, ds.raw_guidance[5:6])
    b = policy.predict({**obs, "point_cloud": rng.uniform(-5, 5, (1, 2, 64, 6))}, ds.raw_guidance[5:6])
    c = policy.predict(obs, ds.raw_guidance[5:6])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_phase_2_output_depends_on_the_point_cloud(finetune_run, job_out):
    policy = ExpertPolicy.load(finetune_run)
    assert policy.cfg.phase == "finetune"
    ds, batch, idx = _windows(policy, job_out, use_point_cloud=True)
    one = ds[[5]]
    obs = _raw_obs(policy, one, with_pc=True)
    a = policy.predict(obs, ds.raw_guidance[5:6])
    shifted = {**obs, "point_cloud": obs["point_cloud"] + np.array([0.1, -0.1, 0.05])}
    b = policy.predict(shifted, ds.raw_guidance[5:6])
    assert np.abs(a - b).max() > 1e-3
    with pytest.raises(TrainingError, match="point_cloud"):
        policy.predict({"state": obs["state"]}, ds.raw_guidance[5:6])


def test_phase_2_starts_from_phase_1(finetune_run, pretrain_run):
    ft = load_checkpoint(finetune_run)
    pt = load_checkpoint(pretrain_run)
    # Low-dimensional statistics come from phase 1; point-cloud statistics are fitted in phase 2.
    for key in ("state", "action", "guidance"):
        assert ft["normalizer"][key] == pt["normalizer"][key]
    assert "point_cloud" in ft["normalizer"] and "point_cloud" not in pt["normalizer"]
    # The null embedding is kept frozen in phase 2: equal to phase 1's EMA weights.
    p1 = ExpertPolicy.load(pretrain_run).model.null_point_feature
    torch.testing.assert_close(ft["model"]["null_point_feature"], p1.detach())
    assert ft["init"] == str(latest_checkpoint(pretrain_run))


def test_checkpoint_round_trip(pretrain_run, job_out):
    ck = load_checkpoint(pretrain_run)
    assert ck["code_version"] and ck["schema_version"] >= 1 and ck["step"] == PRETRAIN_STEPS
    assert ck["config"] == tiny_config(steps=PRETRAIN_STEPS).to_dict()
    saved = Normalizer.load(pretrain_run / "normalizer.json")
    assert saved.to_dict() == ck["normalizer"]
    policy = ExpertPolicy.load(ck["path"], use_ema=False)
    for name, value in policy.model.state_dict().items():
        torch.testing.assert_close(value, ck["model"][name])
    ema = ExpertPolicy.load(ck["path"])
    assert any(not torch.equal(a, b) for a, b in zip(ema.model.parameters(), policy.model.parameters()))
    ds, batch, idx = _windows(ema, job_out)
    obs = _raw_obs(ema, ds[[0, 1]])
    np.testing.assert_array_equal(ema.predict(obs, ds.raw_guidance[:2], seed=7),
                                  ExpertPolicy.load(pretrain_run).predict(obs, ds.raw_guidance[:2], seed=7))


def test_training_uses_guidance_noise_and_prediction_does_not(pretrain_run, job_out):
    policy = ExpertPolicy.load(pretrain_run)
    ds, batch, idx = _windows(policy, job_out)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, noisy, t, state, guidance, pc=None):
            seen["guidance"] = guidance
            return torch.zeros_like(noisy)

    policy.compute_loss(batch, torch.Generator().manual_seed(0), module=Recorder())
    noise = (seen["guidance"] - batch["guidance"]).numpy()
    assert abs(noise.std() - policy.cfg.guidance_noise_std) < 0.25 * policy.cfg.guidance_noise_std
    original = policy.model.encode

    def encode(state, guidance, pc=None):
        seen["eval"] = guidance
        return original(state, guidance, pc)

    policy.model.encode = encode
    policy.predict(_raw_obs(policy, ds[[4]]), ds.raw_guidance[4:5])
    torch.testing.assert_close(seen["eval"], batch["guidance"][4:5])


def test_runs_are_deterministic_and_resume_continues_the_same_run(job_out, tmp_path):
    cfg = tiny_config(steps=6, log_every=1, checkpoint_every=3)
    straight = train_expert(job_out, tmp_path / "a", cfg, log=False, tensorboard=False)
    again = train_expert(job_out, tmp_path / "b", cfg, log=False, tensorboard=False)
    first_half = train_expert(job_out, tmp_path / "c", cfg.replace(steps=3), log=False, tensorboard=False)
    assert first_half.step == 3
    resumed = train_expert(job_out, tmp_path / "c", cfg, log=False, tensorboard=False)
    assert resumed.step == 6
    ref = load_checkpoint(straight.checkpoint)
    for other in (again, resumed):
        ck = load_checkpoint(other.checkpoint)
        for name, value in ref["model"].items():
            torch.testing.assert_close(ck["model"][name], value, rtol=0, atol=0)
        for a, b in zip(ck["ema"]["shadow_params"], ref["ema"]["shadow_params"]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    losses = lambda run: [(m["step"], m["loss"]) for m in read_metrics(run)]  # noqa: E731
    assert losses(tmp_path / "c") == losses(tmp_path / "a")
    assert [s for s, _ in list_checkpoints(tmp_path / "c")] == [3, 6]
    # A run folder holds one phase.
    with pytest.raises(TrainingError, match="cannot be resumed as 'finetune'"):
        train_expert(job_out, tmp_path / "c", cfg.replace(phase="finetune"), log=False)


def test_finetune_needs_init_and_a_matching_network(job_out, pretrain_run, tmp_path):
    with pytest.raises(TrainingError, match="--init"):
        train_expert(job_out, tmp_path / "x", tiny_config(phase="finetune", steps=1), log=False)
    with pytest.raises(TrainingError, match="down_dims"):
        train_expert(job_out, tmp_path / "y", tiny_config(phase="finetune", steps=1, down_dims=[8, 16]),
                     init=pretrain_run, log=False)


def test_predict_rejects_wrong_shapes(pretrain_run):
    policy = ExpertPolicy.load(pretrain_run)
    with pytest.raises(TrainingError, match=r"observation\['state'\] must be \(2x8\)"):
        policy.predict({"state": np.zeros((3, 8))}, np.zeros(7))


def test_config_file_and_errors(tmp_path):
    from appf.training.config import ExpertConfig

    path = tmp_path / "c.yaml"
    path.write_text("down_dims: [16, 32]\nn_groups: 4\nsteps: 7\n")
    cfg = ExpertConfig.from_file(path, steps=9)
    assert cfg.steps == 9 and cfg.down_dims == [16, 32]
    with pytest.raises(TrainingError, match="unknown expert config key"):
        ExpertConfig.from_dict({"bogus": 1})
    with pytest.raises(TrainingError, match="divisible"):
        ExpertConfig(horizon=10, down_dims=[16, 32, 64], n_groups=4)
    with pytest.raises(TrainingError, match="kernel_size must be odd"):
        ExpertConfig(kernel_size=4, down_dims=[16, 32], n_groups=4)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def test_guidance_quaternion_sign_does_not_change_the_prediction(pretrain_run, job_out):
    """q and -q are one rotation. The fixture's gripper points down (quaternion w near 0), where a
    canonical (w >= 0) pose, as the VLM's target poses are, may hold -q of the training sign."""
    policy = ExpertPolicy.load(pretrain_run)
    ds, batch, idx = _windows(policy, job_out)
    obs = _raw_obs(policy, ds[[3, 9]])
    g = ds.raw_guidance[[3, 9]].copy()
    flipped = g.copy()
    flipped[:, 3:7] *= -1
    np.testing.assert_array_equal(policy.predict(obs, flipped), policy.predict(obs, g))
    # Training windows hold the guidance quaternion in the current state's hemisphere.
    current = ds.shards.lowdim["state"][ds.frames[:, policy.cfg.n_obs_steps - 1]]
    assert np.all(np.sum(ds.raw_guidance[:, 3:7] * current[:, 3:7], axis=1) > 0)


def test_an_interrupted_run_resumes_exactly_after_the_warm_up(job_out, tmp_path, monkeypatch):
    """Past the LR warm-up (so the cosine schedule's position matters), a run stopped after a
    checkpoint and resumed ends with the weights, EMA, optimiser and LR of an uninterrupted run."""
    import appf.training.trainer as trainer

    cfg = tiny_config(steps=8, log_every=1, checkpoint_every=4, lr_warmup_steps=2)
    run = lambda out: train_expert(job_out, out, cfg, log=False, tensorboard=False)  # noqa: E731
    straight = load_checkpoint(run(tmp_path / "a").checkpoint)
    save = trainer.save_checkpoint

    def save_then_stop(path, payload):
        out = save(path, payload)
        if payload["step"] == 4:
            raise KeyboardInterrupt("simulated preemption")
        return out
    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    resumed = load_checkpoint(run(tmp_path / "b").checkpoint)
    assert resumed["step"] == straight["step"] == 8
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=0)
    for a, b in zip(resumed["ema"]["shadow_params"], straight["ema"]["shadow_params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed["ema"]["optimization_step"] == straight["ema"]["optimization_step"]
    assert resumed["lr_scheduler"]["_last_lr"] == straight["lr_scheduler"]["_last_lr"]
    assert [m["lr"] for m in read_metrics(tmp_path / "b")] == [m["lr"] for m in read_metrics(tmp_path / "a")]


def test_resume_purges_tensorboard_events_after_the_checkpoint(job_out, tmp_path):
    """A run that died after its step-2 checkpoint had logged steps 3-4; the resumed run rewrites
    them, and TensorBoard must not keep both versions (nor must metrics.jsonl)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from appf.training.checkpoint import checkpoint_path
    from appf.training.metrics import read_metrics
    from appf.training.trainer import train_expert

    cfg = tiny_config(phase="pretrain", steps=4, log_every=1, checkpoint_every=2)
    run = tmp_path / "run"
    train_expert(job_out, run, cfg, log=False)
    checkpoint_path(run, 4).unlink()  # as if the process died after logging step 4, before saving
    train_expert(job_out, run, cfg, log=False)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [1, 2, 3, 4]
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4]
