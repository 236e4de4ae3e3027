"""The upload plan of `appf publish`: which files go to the Hub, in which commits. Pure and
offline: it reads the output's commit markers and a listing of what the Hub repo already holds.

- Only committed shard units are uploaded: the objects their markers list (with sha256 and size),
  then the marker itself, in the same commit as the unit's last objects, so the repo never holds a
  marker for a shard whose objects are not there.
- Commits hold at most `max_files` files (the Hub asks for ~100 per commit) and whole shard units
  when they fit; the manifest and the dataset card go last, alone, so a revision with a manifest
  is a complete one.
- Files already on the Hub with the same content are skipped: re-running after a kill resumes.
- Hub limits are checked before anything is sent: < 10,000 entries per folder, < 100,000 files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field

from appf.schemas import AppfError
from appf.storage import Location, ShardCommit, layout

MAX_FILES_PER_COMMIT = 100
MAX_ENTRIES_PER_FOLDER = 10_000
MAX_FILES_PER_REPO = 100_000
FINAL_KEYS = (layout.MANIFEST, layout.CARD)


class PublishError(AppfError):
    """The output cannot be published as it is; the message says why and what to do."""


@dataclass(frozen=True)
class UploadFile:
    key: str  # path in the output and in the repo
    size: int
    sha256: str | None  # None for files the markers do not list (marker, manifest, card)
    data: bytes | None = None  # what to upload when it is not the stored file (the manifest)


@dataclass(frozen=True)
class RemoteFile:
    """What the Hub reports for a file: size, and the LFS sha256 or the git blob id."""

    size: int
    lfs_sha256: str | None = None
    blob_id: str | None = None


@dataclass
class UploadCommit:
    message: str
    files: list[UploadFile] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class UploadPlan:
    commits: list[UploadCommit]
    skipped: list[str]  # already on the Hub with the same content
    shards: list[int]  # committed shards the repo will hold

    @property
    def files(self) -> int:
        return sum(len(c.files) for c in self.commits)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.commits)


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's bytes (what the Hub reports for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _unit_files(loc: Location, commit: ShardCommit) -> list[UploadFile]:
    data = [UploadFile(k, int(e["bytes"]), str(e["sha256"]))
            for k, e in sorted(commit.objects.items())]
    if not data:
        raise PublishError(f"{loc.url_of(layout.marker_key(commit.shard))} lists no objects "
                           "(written by an older appf): re-run the job into a new --out to publish")
    marker = layout.marker_key(commit.shard)
    return data + [UploadFile(marker, loc.size(marker), None)]


def _same_on_hub(loc: Location, f: UploadFile, remote: dict[str, RemoteFile]) -> bool:
    r = remote.get(f.key)
    if r is None or r.size != f.size:
        return False
    if r.lfs_sha256 is not None:
        return f.sha256 is not None and r.lfs_sha256 == f.sha256
    data = f.data if f.data is not None else loc.read_bytes(f.key)
    return r.blob_id is not None and r.blob_id == git_blob_id(data)


def published_manifest(loc: Location) -> bytes:
    """The manifest as uploaded: without the local record of earlier publications (which would
    change it on every publish)."""
    manifest = json.loads(loc.read_text(layout.MANIFEST))
    manifest.pop("published", None)
    return json.dumps(manifest, indent=2).encode()


def _final_files(loc: Location) -> list[UploadFile]:
    manifest = published_manifest(loc)
    return [UploadFile(layout.MANIFEST, len(manifest), None, manifest),
            UploadFile(layout.CARD, loc.size(layout.CARD), None)]


def check_hub_limits(keys: list[str]) -> None:
    """PublishError when the repo would break the Hub's file-count limits."""
    if len(keys) >= MAX_FILES_PER_REPO:
        raise PublishError(f"{len(keys)} files: the Hub takes fewer than {MAX_FILES_PER_REPO} per "
                           "repo; use larger shards (--episodes-per-shard) or zarr format 3")
    entries: Counter[str] = Counter()
    seen: set[str] = set()
    for key in keys:
        parts = key.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in seen:
                seen.add(path)
                entries[posixpath.dirname(path)] += 1
    folder, n = entries.most_common(1)[0] if entries else ("", 0)
    if n >= MAX_ENTRIES_PER_FOLDER:
        raise PublishError(f"folder '{folder or '.'}' would hold {n} entries: the Hub takes fewer "
                           f"than {MAX_ENTRIES_PER_FOLDER} per folder; use larger shards "
                           "(--episodes-per-shard) or larger chunks (chunk_frames)")


def _pack(units: list[tuple[int, list[UploadFile]]], max_files: int) -> list[UploadCommit]:
    commits: list[UploadCommit] = []
    current, shards = UploadCommit(""), []

    def close() -> None:
        nonlocal current, shards
        if current.files:
            current.message = f"appf: shard(s) {shards[0]}..{shards[-1]}" if len(shards) > 1 \
                else f"appf: shard {shards[0]}"
            commits.append(current)
        current, shards = UploadCommit(""), []

    for shard, files in units:
        if len(current.files) + len(files) > max_files:
            close()
        for start in range(0, len(files), max_files):  # a unit larger than one commit
            part = files[start:start + max_files]
            if len(current.files) + len(part) > max_files:
                close()
            current.files += part
            if not shards or shards[-1] != shard:
                shards.append(shard)
    close()
    return commits


def plan_upload(loc: Location, commits: dict[int, ShardCommit],
                remote: dict[str, RemoteFile] | None = None,
                max_files: int = MAX_FILES_PER_COMMIT) -> UploadPlan:
    """The commits that bring the Hub repo (holding `remote`) to the output's committed state."""
    remote = remote or {}
    for key in FINAL_KEYS:
        if not loc.exists(key):
            raise PublishError(f"{loc.url_of(key)} is missing: publish a finished job (re-run it "
                               "to completion first; `appf status` shows where it stands)")
    units = [(s, _unit_files(loc, c)) for s, c in sorted(commits.items())]
    final = _final_files(loc)
    every = [f for _, files in units for f in files] + final
    check_hub_limits([f.key for f in every])
    skipped = {f.key for f in every if _same_on_hub(loc, f, remote)}
    todo = [(s, [f for f in files if f.key not in skipped]) for s, files in units]
    plan = _pack([(s, files) for s, files in todo if files], max_files)
    final_todo = [f for f in final if f.key not in skipped]
    if plan or final_todo:  # the manifest and card go last, together
        plan.append(UploadCommit("appf: manifest and dataset card", final))
    return UploadPlan(plan, sorted(skipped), sorted(commits))
