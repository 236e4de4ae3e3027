"""`appf publish OUT --repo owner/name`: upload the committed shards, the manifest and the dataset
card to a Hub dataset repo through huggingface_hub, in the bounded commits of `publish_plan`, and
record the published commit in the local manifest. Runs on the driver, never in Beam workers.

Re-running after a kill resumes: files already on the Hub with the same content are skipped.
Commits are paced to at most `commits_per_hour` (the Hub rate-limits commits per repo/user).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from appf.launch.publish_plan import PublishError, RemoteFile, UploadPlan, plan_upload
from appf.pipelines.sinks.commits import read_commits
from appf.storage import Location, layout

DEFAULT_COMMITS_PER_HOUR = 100


@dataclass
class PublishResult:
    repo_id: str
    revision: str
    commit: str
    plan: UploadPlan


def remote_files(api, repo_id: str, revision: str | None) -> dict[str, RemoteFile]:
    """What the repo holds at `revision` (empty for a new repo or branch)."""
    from huggingface_hub import errors
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision,
                                     recursive=True)
        return {e.path: RemoteFile(e.size, e.lfs.sha256 if e.lfs else None, e.blob_id)
                for e in entries if isinstance(e, RepoFile)}
    except (errors.RevisionNotFoundError, errors.RepositoryNotFoundError):
        return {}


class Pacer:
    """Spaces calls at least 3600 / per_hour seconds apart."""

    def __init__(self, per_hour: float, clock=time.monotonic, sleep=time.sleep):
        self.interval_s = 3600.0 / per_hour if per_hour > 0 else 0.0
        self.clock, self.sleep, self.last = clock, sleep, None

    def wait(self) -> None:
        if self.last is not None:
            self.sleep(max(0.0, self.last + self.interval_s - self.clock()))
        self.last = self.clock()


def _operations(loc: Location, files) -> list:
    from huggingface_hub import CommitOperationAdd

    def content(f):
        if f.data is not None:
            return f.data
        return str(loc.local_path(f.key)) if loc.is_local else loc.read_bytes(f.key)

    return [CommitOperationAdd(path_in_repo=f.key, path_or_fileobj=content(f)) for f in files]


def record_publication(loc: Location, entry: dict[str, Any]) -> None:
    """Append `entry` to the local manifest's `published` list (written whole)."""
    manifest = json.loads(loc.read_text(layout.MANIFEST))
    manifest.setdefault("published", []).append(entry)
    loc.write_text(layout.MANIFEST, json.dumps(manifest, indent=2))


def _upload(api, loc: Location, repo_id: str, revision: str, plan: UploadPlan,
            commits_per_hour: float, stream: TextIO) -> str | None:
    pacer, sha = Pacer(commits_per_hour), None
    for i, commit in enumerate(plan.commits, 1):
        pacer.wait()
        info = api.create_commit(repo_id, _operations(loc, commit.files), repo_type="dataset",
                                 commit_message=commit.message, revision=revision)
        sha = info.oid
        print(f"[appf] publish: commit {i}/{len(plan.commits)} {sha[:10]} ({len(commit.files)} "
              f"files, {commit.bytes / 1e6:.1f} MB): {commit.message}", file=stream, flush=True)
    return sha


def publish(out: str, repo_id: str, private: bool = False, revision: str | None = None,
            commits_per_hour: float = DEFAULT_COMMITS_PER_HOUR, api=None,
            stream: TextIO | None = None) -> PublishResult:
    """Publish the committed state of `out` to the dataset repo `repo_id` (see module doc)."""
    from huggingface_hub import HfApi

    stream = stream or sys.stderr
    loc, api = Location(out), api or HfApi()
    branch = revision or "main"
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if branch != "main":
        api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
    plan = plan_upload(loc, read_commits(loc), remote_files(api, repo_id, branch))
    print(f"[appf] publish: {len(plan.shards)} committed shard(s) -> {repo_id}@{branch}: "
          f"{plan.files} file(s), {plan.bytes / 1e6:.1f} MB in {len(plan.commits)} commit(s); "
          f"{len(plan.skipped)} already there", file=stream, flush=True)
    sha = _upload(api, loc, repo_id, branch, plan, commits_per_hour, stream)
    sha = sha or api.dataset_info(repo_id, revision=branch).sha
    record_publication(loc, {
        "repo": repo_id, "revision": branch, "commit": sha, "shards": plan.shards,
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return PublishResult(repo_id, branch, sha, plan)


def explain_hub_error(e: Exception, repo_id: str) -> PublishError | None:
    """One line for the Hub client's errors (auth, rate limit, network), else None."""
    from huggingface_hub import errors

    resume = "re-run the same command to resume (uploaded files are skipped)"
    if isinstance(e, errors.LocalTokenNotFoundError):
        return PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN")
    if isinstance(e, errors.HfHubHTTPError) and e.response is not None:
        code = e.response.status_code
        what = {401: "the token is invalid", 403: f"the token may not write to {repo_id}",
                429: "the Hub rate limit was hit (lower --commits-per-hour)"}.get(code, f"HTTP {code}")
        return PublishError(f"publishing to {repo_id} failed: {what}; {resume}")
    if isinstance(e, (ConnectionError, TimeoutError, OSError)):
        return PublishError(f"publishing to {repo_id} failed: network error ({e}); {resume}")
    return None
