"""Shared, build-once fixtures of the training tests (no tests here).

Fixture shards come from the real pipeline (synthetic source, 4 episodes of 24 steps, 128 points,
2 shards); trained runs use a tiny expert. Everything is cached per test session in module
globals, so modules that import these fixtures share one build.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from appf.training.config import ExpertConfig

_CACHE: dict[str, Any] = {}

SOURCE = {"episodes": 4, "steps": 24, "height": 96, "width": 128, "seed": 1}

# A tiny expert: seconds per hundred steps on one CPU core.
TINY = dict(down_dims=[16, 32], point_dims=[16, 32], point_out_dim=16, state_out_dim=16,
            guidance_out_dim=16, diffusion_step_embed_dim=16, n_groups=4, kernel_size=3,
            batch_size=32, lr=3e-3, lr_warmup_steps=10, log_every=10, checkpoint_every=1000, seed=0)
PRETRAIN_STEPS = 500
FINETUNE_STEPS = 20


def tiny_config(**changes: Any) -> ExpertConfig:
    return ExpertConfig.from_dict({**TINY, **changes})


def _run_job(out: Path, source: dict | None = None, **overrides: Any) -> Path:
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    cfg = JobConfig.from_dict(dict(source="synthetic", source_options=dict(source or SOURCE), out=str(out),
                                   episodes_per_shard=2, n_points=128, progress_every_s=0, **overrides))
    run_job(cfg, local_options(1))
    return out


def _once(key: str, factory, build):
    if key not in _CACHE:
        _CACHE[key] = build(factory.mktemp(key))
    return _CACHE[key]


@pytest.fixture(scope="session")
def job_out(tmp_path_factory) -> Path:
    """Output folder of a pipeline job: pointclouds/ (Zarr format 3) and sft/."""
    return _once("job3", tmp_path_factory, lambda d: _run_job(d / "out"))


@pytest.fixture(scope="session")
def job_out_v2(tmp_path_factory) -> Path:
    """The first shard of the same source written as Zarr format 2."""
    return _once("job2", tmp_path_factory,
                 lambda d: _run_job(d / "out", source=dict(SOURCE, episodes=2), zarr_format=2))


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory, job_out) -> Path:
    """A phase-1 run of the tiny expert that overfits the fixture shards."""
    from appf.training.trainer import train_expert

    def build(d: Path) -> Path:
        train_expert(job_out, d / "run", tiny_config(steps=PRETRAIN_STEPS), log=False, tensorboard=True)
        return d / "run"
    return _once("pretrain", tmp_path_factory, build)


@pytest.fixture(scope="session")
def finetune_run(tmp_path_factory, job_out, pretrain_run) -> Path:
    """A short phase-2 run started from ``pretrain_run``."""
    from appf.training.trainer import train_expert

    def build(d: Path) -> Path:
        cfg = tiny_config(phase="finetune", steps=FINETUNE_STEPS)
        train_expert(job_out, d / "run", cfg, init=pretrain_run, log=False, tensorboard=False)
        return d / "run"
    return _once("finetune", tmp_path_factory, build)


def copy_without_point_clouds(job: Path, dest: Path) -> Path:
    """A copy of the job's shards whose data/point_cloud arrays are deleted."""
    shutil.copytree(job / "pointclouds", dest / "pointclouds")
    for shard in (dest / "pointclouds").glob("*.zarr"):
        shutil.rmtree(shard / "data" / "point_cloud")
    return dest
