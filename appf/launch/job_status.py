"""`appf status OUT`: progress of a job from what it has committed (plan, markers, staging, lock),
while it runs or after. Reads only; never takes the lock."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from appf.pipelines.job_lease import STALE_AFTER_S, lease_age_s, read_lease
from appf.pipelines.job_lock import describe_holder, lock_holder
from appf.pipelines.progress import format_eta, staged_counts
from appf.pipelines.shard_plan import read_plan
from appf.pipelines.sinks.commits import read_commits
from appf.schemas import AppfError
from appf.storage import Location, layout


@dataclass
class JobStatus:
    planned_episodes: int
    planned_shards: int
    committed_shards: int
    done_episodes: int  # written or failed, in committed shards or staged
    written_episodes: int
    frames: int
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    holder: dict | None = None  # the running job, if any
    rate_episodes_per_s: float | None = None

    @property
    def complete(self) -> bool:
        return self.planned_shards > 0 and self.committed_shards == self.planned_shards

    def eta_s(self) -> float | None:
        if not self.rate_episodes_per_s:
            return None
        return max(self.planned_episodes - self.done_episodes, 0) / self.rate_episodes_per_s


def _parse_time(text: str | None) -> float | None:
    try:
        return _dt.datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _marker_times(out: Location, commits: dict) -> dict[int, float]:
    """When each marker was written (file mtime locally, LastModified on object stores)."""
    return {s: out.fs.modified(out.path(layout.marker_key(s))).timestamp() for s in commits}


def _rate(commits: dict, times: dict[int, float], since: float | None, end: float) -> float | None:
    """Episodes per second of the current (or last) run: episodes of the shards committed since
    it started, over the time since then."""
    if since is None:
        return None
    episodes = sum(c.episodes + c.failures for s, c in commits.items() if times[s] >= since)
    return episodes / (end - since) if episodes and end > since else None


def _holder_notes(out: Location) -> tuple[dict | None, dict]:
    """(the running job's holder note or None, the last holder note written)."""
    if out.is_local:
        return lock_holder(out.local_path()), _last_holder(out)
    lease = read_lease(out)
    if lease is None:
        return None, {}
    age = lease_age_s(lease)
    return (lease if age is not None and age <= STALE_AFTER_S else None), lease


def _last_holder(out: Location) -> dict:
    try:
        return json.loads(out.read_text(layout.LOCK_FILE) or "{}")
    except (OSError, ValueError):
        return {}


def job_status(out: str | Path | Location, now: float | None = None) -> JobStatus:
    """Progress of the job on `out` from its plan, markers, staging and lock; reads only."""
    loc = out if isinstance(out, Location) else Location(out)
    if not (loc.exists(layout.LOCK_FILE) or loc.exists(layout.MANIFEST)):
        raise AppfError(f"{loc.url} is not an appf output (no {layout.LOCK_FILE} or "
                        f"{layout.MANIFEST}); check the path")
    plan, commits = read_plan(loc), read_commits(loc)
    holder, last = _holder_notes(loc)
    now = now if now is not None else time.time()
    times = _marker_times(loc, commits)
    by_stage: dict[str, int] = {}
    for c in commits.values():
        for stage, n in c.failures_by_stage.items():
            by_stage[stage] = by_stage.get(stage, 0) + n
    done, frames = staged_counts(loc)
    end = now if holder else max(times.values(), default=now)
    return JobStatus(
        planned_episodes=len(plan.index_of) if plan else sum(c.episodes + c.failures
                                                             for c in commits.values()),
        planned_shards=len(plan.shards()) if plan else len(commits),
        committed_shards=len(commits), done_episodes=done,
        written_episodes=sum(c.episodes for c in commits.values()), frames=frames,
        failures_by_stage=by_stage, holder=holder,
        rate_episodes_per_s=_rate(commits, times, _parse_time((holder or last).get("started_at")), end))


def status_text(st: JobStatus, out: str | Path) -> str:
    state = (f"running ({describe_holder(st.holder)})" if st.holder
             else "complete" if st.complete else "stopped (re-run the job to resume)")
    fails = ", ".join(f"{k}: {v}" for k, v in sorted(st.failures_by_stage.items())) or "none"
    rate = (f"{st.rate_episodes_per_s * 3600:.1f} episodes/h" if st.rate_episodes_per_s
            else "unknown")
    eta = st.eta_s()
    eta_text = "-" if st.complete else (format_eta(eta) if eta is not None else "unknown")
    return (f"{out}: {state}\n"
            f"  episodes {st.done_episodes}/{st.planned_episodes} done "
            f"({st.written_episodes} written in committed shards), frames {st.frames}\n"
            f"  shards {st.committed_shards}/{st.planned_shards} committed\n"
            f"  failures by stage: {fails}\n"
            f"  rate {rate}, ETA {eta_text}")
