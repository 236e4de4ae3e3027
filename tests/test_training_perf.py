"""Phase-2 training without memory churn: the launcher's malloc settings (measured by page
faults in fresh processes) and the bf16 point encoder (same loss curve as float32)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from appf.training.allocator import ENV_SETTINGS, apply_training_allocator
from appf.training.metrics import read_metrics
from appf.training.model.point_encoder import PointEncoder
from appf.training.trainer import train_expert
from test_training_helpers import job_out, pretrain_run, tiny_config  # noqa: F401

BLOCK_PAGES = (64 << 20) // 4096  # one 64 MiB block: above glibc's largest mmap threshold

# Allocates, touches and frees a 64 MiB block 8 times; prints the minor page faults of the loop.
_CHURN = textwrap.dedent("""
    import ctypes, resource, sys
    if sys.argv[1] == "apply":
        from appf.training.allocator import apply_training_allocator
        assert apply_training_allocator().applied
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str, extra_env: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], env=env, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


def test_allocator_reuses_freed_blocks_instead_of_faulting_them_back():
    default = _faults("default", {})
    applied = _faults("apply", {})  # mallopt in the running process
    inherited = _faults("default", ENV_SETTINGS)  # a child started with the exported variables
    assert default >= 7 * BLOCK_PAGES, default  # every block mmap'ed and faulted in anew
    assert applied <= 1.5 * BLOCK_PAGES, applied  # faulted in once, then reused
    assert inherited <= 1.5 * BLOCK_PAGES, inherited


def test_allocator_exports_its_settings_and_keeps_the_users():
    env = {"MALLOC_TRIM_THRESHOLD_": "12345"}
    apply_training_allocator(env)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"
    assert env["MALLOC_MMAP_MAX_"] == ENV_SETTINGS["MALLOC_MMAP_MAX_"]


def test_bf16_point_encoder_features_match_float32():
    torch.manual_seed(0)
    enc = PointEncoder(3, (64, 128, 256), 64)
    pts = torch.randn(8, 512, 3)
    ref = enc(pts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = enc(pts).float()
    assert torch.linalg.norm(low - ref) / torch.linalg.norm(ref) < 0.03


def test_bf16_point_encoder_keeps_the_phase_2_loss_curve(job_out, pretrain_run, tmp_path):
    curves = {}
    for precision in ("float32", "bfloat16"):
        cfg = tiny_config(phase="finetune", steps=60, point_encoder_precision=precision)
        train_expert(job_out, tmp_path / precision, cfg, init=pretrain_run, log=False,
                     tensorboard=False)
        curves[precision] = np.array([m["loss"] for m in read_metrics(tmp_path / precision)])
    fp32, bf16 = curves["float32"], curves["bfloat16"]
    assert len(fp32) == len(bf16) == 6
    # same per-step noise and timesteps: the curves track each other interval by interval
    np.testing.assert_allclose(bf16, fp32, rtol=0.15)
    assert bf16[-2:].mean() == pytest.approx(fp32[-2:].mean(), rel=0.1)


def test_unknown_point_encoder_precision_is_refused():
    from appf.training.errors import TrainingError

    with pytest.raises(TrainingError, match="point_encoder_precision"):
        tiny_config(point_encoder_precision="float16")
