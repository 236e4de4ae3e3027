"""Where training data comes from: a local folder, or a published dataset id on the Hugging Face
Hub (``owner/name`` or ``owner/name@revision``), downloaded through huggingface_hub into its
cache (only the files the trainer needs) and read from the cache when offline
(``HF_HUB_OFFLINE=1``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

from appf.storage import Location, is_url, layout
from appf.storage.commits import committed_entries
from appf.training.errors import TrainingError

# What each trainer needs from a published appf dataset (DESIGN §4 layout).
EXPERT_FILES: tuple[str, ...] = ("manifest.json", "pointclouds/**")
VLM_FILES: tuple[str, ...] = ("manifest.json", "sft/**")
# Phase 1 never reads the per-point arrays (the bulk of a dataset): leave them out of its download
# (fnmatch patterns: '*' also matches '/'; Zarr 3 'zarr.json' + 'c/...' and Zarr 2 '.zarray' + chunks).
PER_POINT_FILES: tuple[str, ...] = ("pointclouds/*/data/point_cloud/*", "pointclouds/*/data/point_label/*")


def expert_ignore_patterns(phase: str) -> tuple[str, ...]:
    """Files a phase's download skips: the point clouds for 'pretrain', nothing for 'finetune'."""
    return PER_POINT_FILES if phase == "pretrain" else ()

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

DownloadFn = Callable[..., str]


def looks_like_dataset_id(spec: str) -> bool:
    return bool(_REPO_ID.match(spec)) and not spec.startswith((".", "/"))


def resolve_dataset(spec: str | Path, patterns: Sequence[str], download: DownloadFn | None = None,
                    cache_dir: str | Path | None = None, ignore: Sequence[str] = ()) -> Path | str:
    """A local folder for ``spec``: the folder itself if it exists, an object-store URL
    (``s3://bucket/run``, ``gs://...``; returned as is, read in place), else the Hub snapshot of
    the files matching ``patterns`` and none of ``ignore``.

    ``download`` defaults to ``huggingface_hub.snapshot_download`` (tests pass a local fake with
    the same keyword interface). Offline mode is read from huggingface_hub at call time."""
    if is_url(spec):
        return str(spec)
    p = Path(spec)
    if p.exists():
        return p
    text = str(spec)
    if not looks_like_dataset_id(text):
        raise TrainingError(f"{text!r} is neither an existing local folder nor a dataset id of the form "
                            "owner/name[@revision]; check the path")
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import constants, errors, snapshot_download

    download = download or snapshot_download
    offline = constants.is_offline_mode()

    def fetch(allow: Sequence[str]) -> Path:
        return Path(download(repo_id=repo_id, repo_type="dataset", revision=revision or None,
                             allow_patterns=list(allow), ignore_patterns=list(ignore) or None,
                             cache_dir=cache_dir, local_files_only=offline))

    try:
        markers = fetch(("manifest.json", f"{layout.COMMITS_DIR}/*"))
        local = fetch(committed_patterns(markers, patterns))
    except errors.LocalEntryNotFoundError as e:
        how = ("HF_HUB_OFFLINE is set and it is not in the local cache: run once online, or "
               f"`hf download {repo_id} --repo-type dataset`" if offline else
               "the Hub could not be reached and it is not in the local cache")
        raise TrainingError(f"dataset {repo_id} unavailable: {how}") from e
    except errors.RepositoryNotFoundError as e:
        raise TrainingError(f"dataset {repo_id} not found on the Hub (or it is private: log in with "
                            "`hf auth login`)") from e
    except errors.RevisionNotFoundError as e:
        raise TrainingError(f"dataset {repo_id} has no revision {revision!r}") from e
    return local


def committed_patterns(root: Path, patterns: Sequence[str]) -> list[str]:
    """`patterns` narrowed to the committed shard units of the output at `root` (its markers, or
    its manifest for repos published without them): a pattern for shard files becomes one pattern
    per committed unit, so the download never holds a shard that an interrupted publish left
    without its marker."""
    entries = committed_entries(Location(root)) or []
    fields = {layout.POINTCLOUDS_DIR: "path", layout.SFT_DIR: "sft_path",
              layout.FAILURES_DIR: "failures_path"}
    narrowed = [p for p in patterns if not p.startswith(tuple(fields))]
    for top, field in fields.items():
        if any(p.startswith(top) for p in patterns):
            narrowed += [pat for e in entries if e.get(field) for pat in (f"{e[field]}/*", e[field])]
    return narrowed + [f"{layout.COMMITS_DIR}/*"]
