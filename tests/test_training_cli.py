"""`appf train expert` from the command line, from a local folder or a (faked) Hub dataset id."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from appf.launch.cli import main
from appf.training.checkpoint import list_checkpoints, load_checkpoint
from appf.training.errors import TrainingError
from appf.training.metrics import read_metrics
from appf.training.sources import EXPERT_FILES, resolve_dataset
from test_training_helpers import TINY, job_out  # noqa: F401


def _config_file(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "log_every": 1, "checkpoint_every": 2}))
    return path


def test_cli_pretrain_then_finetune(job_out, tmp_path, capsys):
    cfg = _config_file(tmp_path)
    rc = main(["train", "expert", "--phase", "pretrain", "--shards", str(job_out), "--out",
               str(tmp_path / "p1"), "--steps", "2", "--batch-size", "8", "--config", str(cfg)])
    assert rc == 0
    assert "trained pretrain to step 2" in capsys.readouterr().out
    ck = load_checkpoint(tmp_path / "p1")
    assert ck["config"]["batch_size"] == 8 and ck["config"]["steps"] == 2
    rc = main(["train", "expert", "--phase", "finetune", "--shards", str(job_out / "pointclouds"),
               "--init", str(tmp_path / "p1"), "--out", str(tmp_path / "p2"), "--steps", "2",
               "--config", str(cfg)])
    assert rc == 0
    assert [m["step"] for m in read_metrics(tmp_path / "p2")] == [1, 2]
    assert all(m["phase"] == "finetune" for m in read_metrics(tmp_path / "p2"))
    # Running again with more steps resumes the same folder.
    rc = main(["train", "expert", "--phase", "finetune", "--shards", str(job_out), "--out",
               str(tmp_path / "p2"), "--steps", "3", "--config", str(cfg)])
    assert rc == 0
    assert [s for s, _ in list_checkpoints(tmp_path / "p2")] == [2, 3]
    # The resumed run's checkpoints still name the phase-1 checkpoint it started from.
    p1_ckpt = str(list_checkpoints(tmp_path / "p1")[-1][1])
    assert load_checkpoint(tmp_path / "p2")["init"] == p1_ckpt


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    rc = main(["train", "expert", "--phase", "finetune", "--shards", str(tmp_path / "missing"),
               "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "neither an existing local folder nor a dataset id" in capsys.readouterr().err


class FakeHub:
    """A local fake of ``huggingface_hub.snapshot_download``: datasets are local folders, the
    "cache" another folder; honours allow_patterns, revision and local_files_only."""

    def __init__(self, datasets: dict[str, Path], cache: Path):
        self.datasets, self.cache, self.calls = datasets, cache, []

    def __call__(self, *, repo_id, repo_type, revision=None, allow_patterns=None, ignore_patterns=None,
                 cache_dir=None, local_files_only=False, **_):
        self.calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                           "allow_patterns": allow_patterns, "ignore_patterns": ignore_patterns,
                           "local_files_only": local_files_only})
        assert repo_type == "dataset"
        target = self.cache / repo_id.replace("/", "--") / (revision or "main")
        if local_files_only:
            if not target.exists():
                raise hf_errors.LocalEntryNotFoundError("not cached")
            return str(target)
        if repo_id not in self.datasets:
            import httpx

            url = f"https://hub.invalid/api/datasets/{repo_id}"
            response = httpx.Response(404, request=httpx.Request("GET", url))
            raise hf_errors.RepositoryNotFoundError("no such repo", response=response)
        src = self.datasets[repo_id]
        for f in src.rglob("*"):
            rel = f.relative_to(src).as_posix()
            if (f.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns)
                    and not any(fnmatch.fnmatch(rel, p) for p in ignore_patterns or ())):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target / rel)
        return str(target)


def test_dataset_id_is_downloaded_once_and_read_offline(job_out, tmp_path, monkeypatch):
    fake = FakeHub({"lab/pick-cube": job_out}, tmp_path / "cache")
    local = resolve_dataset("lab/pick-cube", EXPERT_FILES, download=fake)
    assert (local / "pointclouds" / "shard-00000.zarr").is_dir()
    assert not (local / "sft").exists()                       # only what the expert needs
    assert fake.calls[-1]["local_files_only"] is False
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert resolve_dataset("lab/pick-cube", EXPERT_FILES, download=fake) == local
    assert fake.calls[-1]["local_files_only"] is True
    with pytest.raises(TrainingError, match="HF_HUB_OFFLINE"):
        resolve_dataset("lab/other@v1", EXPERT_FILES, download=fake)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(TrainingError, match="not found on the Hub"):
        resolve_dataset("lab/other", EXPERT_FILES, download=fake)


def test_cli_trains_from_a_dataset_id(job_out, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    fake = FakeHub({"lab/pick-cube": job_out}, tmp_path / "cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    rc = main(["train", "expert", "--phase", "pretrain", "--shards", "lab/pick-cube@main", "--out",
               str(tmp_path / "run"), "--steps", "1", "--config", str(_config_file(tmp_path))])
    assert rc == 0
    assert fake.calls[0]["revision"] == "main"
    assert load_checkpoint(tmp_path / "run")["shards"] == ["shard-00000.zarr", "shard-00001.zarr"]
    # Phase 1 reads no point cloud, so none was downloaded; the low-dimensional arrays were.
    cached = Path(fake.calls[0]["repo_id"].replace("/", "--"))
    shard = tmp_path / "cache" / cached / "main" / "pointclouds" / "shard-00000.zarr"
    assert (shard / "data" / "state").is_dir() and (shard / "meta" / "episode_ends").is_dir()
    assert not (shard / "data" / "point_cloud").exists() and not (shard / "data" / "point_label").exists()
    # Phase 2 from the same id: offline it says what is missing; online it fetches them.
    finetune = ["train", "expert", "--phase", "finetune", "--shards", "lab/pick-cube@main", "--init",
                str(tmp_path / "run"), "--out", str(tmp_path / "run2"), "--steps", "1",
                "--config", str(_config_file(tmp_path))]
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    capsys.readouterr()
    assert main(finetune) == 2
    assert "phase 2 needs the point clouds" in capsys.readouterr().err
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    assert main(finetune) == 0
    assert (shard / "data" / "point_cloud").is_dir()
