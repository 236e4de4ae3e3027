"""Weights resolution: local directories, the cache at a pinned revision, offline mode, one clear
error for missing weights, and `appf models fetch` (with huggingface_hub's download replaced by
a local fake: tests never download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appf.annotators.weights import WEIGHTS, WeightsNotFoundError, fetch_weights, resolve_weights
from appf.launch.cli import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for spec in WEIGHTS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    for var in ("HF_HUB_OFFLINE", "APPF_OFFLINE", "APPF_WEIGHTS_DOWNLOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPF_WEIGHTS_DIR", str(tmp_path / "empty-cache"))


@pytest.fixture
def fake_hub(monkeypatch):
    """huggingface_hub.hf_hub_download without the network: 'downloads' write a small file into
    cache_dir/<repo>/<revision>/; local_files_only lookups raise like the real one."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list[dict] = []

    def download(repo_id, filename, revision=None, cache_dir=None, local_files_only=False, **kw):
        calls.append(dict(repo_id=repo_id, filename=filename, revision=revision,
                          local_files_only=local_files_only))
        path = Path(cache_dir) / repo_id.replace("/", "--") / str(revision) / filename
        if not path.exists():
            if local_files_only:
                raise LocalEntryNotFoundError(f"{repo_id}/{filename} not cached")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("weights")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return calls


def test_local_directory_by_env_var(monkeypatch, tmp_path):
    d = tmp_path / "promptda"
    d.mkdir()
    for f in WEIGHTS["promptda-vitl"].files:
        (d / f).write_text("x")
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITL", str(d))
    resolved = resolve_weights("promptda-vitl")
    assert resolved.directory == d and resolved.revision == f"local:{d}"
    (d / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="lacks model.safetensors"):
        resolve_weights("promptda-vitl")


def test_missing_weights_give_one_clear_error():
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("moge-2-vitl-normal")
    msg = str(e.value)
    assert "appf models fetch moge-2-vitl-normal" in msg
    assert "Ruicheng/moge-2-vitl-normal" in msg and WEIGHTS["moge-2-vitl-normal"].revision in msg
    assert "APPF_WEIGHTS_MOGE_2_VITL_NORMAL" in msg and "APPF_WEIGHTS_DOWNLOAD" in msg


def test_offline_mode_never_downloads(monkeypatch, fake_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="offline mode is on"):
        resolve_weights("promptda-vitl", download=True)
    with pytest.raises(WeightsNotFoundError, match="offline mode is on"):
        fetch_weights("promptda-vitl")
    assert fake_hub and all(c["local_files_only"] for c in fake_hub)


def test_fetch_then_load_from_the_cache(monkeypatch, tmp_path, fake_hub, capsys):
    cache = tmp_path / "worker-cache"
    assert main(["models", "fetch", "moge-2-vits-normal", "--cache-dir", str(cache)]) == 0
    pinned = WEIGHTS["moge-2-vits-normal"].revision
    assert [c["revision"] for c in fake_hub if not c["local_files_only"]] == [pinned]
    assert "moge-2-vits-normal" in capsys.readouterr().out
    monkeypatch.setenv("APPF_WEIGHTS_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a worker: offline, cache shipped in the image
    resolved = resolve_weights("moge-2-vits-normal")
    assert (resolved.directory / "model.pt").is_file() and resolved.revision == pinned


def test_fetch_unpinned_needs_a_revision(tmp_path, fake_hub, capsys):
    assert main(["models", "fetch", "promptda-vits", "--cache-dir", str(tmp_path)]) == 2
    assert "pass --revision" in capsys.readouterr().err
    rev = "0123456789abcdef0123456789abcdef01234567"
    assert main(["models", "fetch", "promptda-vits", "--cache-dir", str(tmp_path),
                 "--revision", rev]) == 0
    assert {c["revision"] for c in fake_hub} == {rev}


def test_unpinned_weights_error_gives_a_route_that_works(monkeypatch, tmp_path, fake_hub):
    """For an unpinned repository loading never reads the cache, so the advice must be to point
    the env var at the fetched directory -- and following it must work."""
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("promptda-vits")
    msg = str(e.value)
    assert "--revision" in msg and "APPF_WEIGHTS_PROMPTDA_VITS=<the directory" in msg
    rev = "0123456789abcdef0123456789abcdef01234567"
    fetched = fetch_weights("promptda-vits", tmp_path, rev)
    with pytest.raises(WeightsNotFoundError):  # fetched into the cache, still not loadable
        resolve_weights("promptda-vits")
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITS", str(fetched.directory))
    assert resolve_weights("promptda-vits").directory == fetched.directory


def test_fetch_of_manual_weights_explains_where_to_get_them(capsys):
    assert main(["models", "fetch", "foundation-stereo-vitl"]) == 2
    err = capsys.readouterr().err
    assert "Google Drive" in err and "23-51-11" in err and "APPF_WEIGHTS_FOUNDATION_STEREO_VITL" in err


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in WEIGHTS:
        assert name in out
    assert "UNPINNED" in out and "not here" in out
