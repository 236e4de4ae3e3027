"""Two-process DDP training on CPU (gloo) through torchrun (about 20 s: two interpreter
start-ups). APPF_SKIP_DDP=1 skips it for quick local runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from appf.training.checkpoint import load_checkpoint
from test_training_helpers import TINY, job_out  # noqa: F401

pytestmark = pytest.mark.skipif(os.environ.get("APPF_SKIP_DDP") == "1",
                                reason="APPF_SKIP_DDP=1 skips the two-process torchrun test")


def test_torchrun_two_processes(job_out, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "log_every": 2, "checkpoint_every": 4}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "appf.launch.cli",
           "train", "expert", "--phase", "pretrain", "--shards", str(job_out), "--out", str(tmp_path / "run"),
           "--steps", "4", "--batch-size", "8", "--config", str(cfg)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained pretrain to step 4") == 1          # rank 0 reports
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4]
    assert "2 process(es)" in done.stderr
    assert load_checkpoint(tmp_path / "run")["step"] == 4
