"""The persisted episode -> shard plan (`<out>/_plan.json`), written before any work starts.

Each episode, keyed by `dataset/episode_id`, gets a plan index the first time a job sees it; its
shard is `plan_index // episodes_per_shard` for good. A later run on the same output
- keeps every planned episode where it is, whatever the order of the input list;
- appends new episodes after the last planned one (into the last shard if that shard is not
  committed yet, else into new shards), so a committed shard never changes;
- keeps the committed output of planned episodes that left the input, and refuses to go on when a
  planned episode of an uncommitted shard left the input (it would be skipped without a trace).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from appf.schemas import ConfigError, EpisodeRef
from appf.storage import Location, layout

PLAN_FILE = layout.PLAN_FILE
PLAN_VERSION = 1


def episode_key(ref: EpisodeRef) -> str:
    return f"{ref.dataset}/{ref.episode_id}"


@dataclass
class ShardPlan:
    """Plan index of every episode the output has ever been asked for."""

    episodes_per_shard: int
    index_of: dict[str, int] = field(default_factory=dict)  # episode key -> plan index

    def shard_of(self, key: str) -> int:
        return self.index_of[key] // self.episodes_per_shard

    def shards(self) -> dict[int, list[str]]:
        """Shard -> its episode keys in plan order."""
        out: dict[int, list[str]] = {}
        for key, index in sorted(self.index_of.items(), key=lambda kv: kv[1]):
            out.setdefault(index // self.episodes_per_shard, []).append(key)
        return out

    def to_json(self) -> str:
        rows = sorted(([i, k] for k, i in self.index_of.items()))
        return json.dumps({"version": PLAN_VERSION, "episodes_per_shard": self.episodes_per_shard,
                           "episodes": rows}, indent=0)


@dataclass
class PlanUpdate:
    """The plan after this run's input list, and what changed against the persisted one."""

    plan: ShardPlan
    refs: list[EpisodeRef]  # this run's input, each with `index` = its plan index
    added: list[str]
    left_committed: list[str]  # planned, gone from the input, kept in a committed shard


def _loc(out: str | Path | Location) -> Location:
    return out if isinstance(out, Location) else Location(out)


def plan_path(out: str | Path | Location) -> str:
    """URL (or absolute local path) of the plan."""
    return _loc(out).url_of(PLAN_FILE)


def read_plan(out: str | Path | Location) -> ShardPlan | None:
    """The persisted plan, or None when the output has none yet."""
    loc = _loc(out)
    path = loc.url_of(PLAN_FILE)
    if not loc.exists(PLAN_FILE):
        return None
    try:
        data = json.loads(loc.read_text(PLAN_FILE))
        return ShardPlan(int(data["episodes_per_shard"]),
                         {str(k): int(i) for i, k in data["episodes"]})
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a valid shard plan ({e}); it is written before any "
                          "work starts: restore it from a backup, or start over in a new --out") from e


def write_plan(out: str | Path | Location, plan: ShardPlan) -> str:
    """Write the plan whole (temp + fsync + rename locally, one put remotely); returns its URL."""
    _loc(out).write_text(PLAN_FILE, plan.to_json())
    return plan_path(out)


def _check_unique(refs: list[EpisodeRef]) -> None:
    seen: set[str] = set()
    for ref in refs:
        key = episode_key(ref)
        if key in seen:
            raise ConfigError(f"the input lists episode {key} twice ({ref.uri}); episode ids "
                              "must be unique within a dataset")
        seen.add(key)


def _next_index(plan: ShardPlan, committed: set[int]) -> int:
    """Where new episodes go: right after the last one when its shard is still open."""
    if not plan.index_of:
        return 0
    last = max(plan.index_of.values())
    if last // plan.episodes_per_shard in committed:
        return (last // plan.episodes_per_shard + 1) * plan.episodes_per_shard
    return last + 1


def _refuse_lost(plan: ShardPlan, gone: list[str], committed: set[int], out: str) -> None:
    lost = [k for k in gone if plan.shard_of(k) not in committed]
    if lost:
        shown = ", ".join(f"{k} (shard {plan.shard_of(k)})" for k in lost[:5])
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        raise ConfigError(
            f"{len(lost)} episode(s) planned for uncommitted shards of {out} are not in the input "
            f"any more: {shown}{more}; restore them to the input (or the --episodes/--input of "
            "the first run), or write this input to a new --out")


def update_plan(previous: ShardPlan | None, refs: list[EpisodeRef], episodes_per_shard: int,
                committed: set[int], out: str = "the output") -> PlanUpdate:
    """Extend `previous` (None on a first run) with `refs`; see the module docstring."""
    _check_unique(refs)
    plan = ShardPlan(episodes_per_shard, dict(previous.index_of) if previous else {})
    if previous and previous.episodes_per_shard != episodes_per_shard:
        raise ConfigError(f"{out} was planned with episodes_per_shard "
                          f"{previous.episodes_per_shard}, this job asks for {episodes_per_shard}")
    keys = [episode_key(r) for r in refs]
    gone = sorted(set(plan.index_of) - set(keys), key=plan.index_of.__getitem__)
    _refuse_lost(plan, gone, committed, out)
    added = [k for k in keys if k not in plan.index_of]
    start = _next_index(plan, committed)
    for offset, key in enumerate(added):
        plan.index_of[key] = start + offset
    planned_refs = [dataclasses.replace(r, index=plan.index_of[k]) for r, k in zip(refs, keys)]
    return PlanUpdate(plan, sorted(planned_refs, key=lambda r: r.index), added, gone)


def plan_problems(plan: ShardPlan, commits: dict) -> list[str]:
    """Disagreements between the plan and the commit markers (for validate): a committed shard
    must hold exactly its planned episodes, each written or recorded as failed."""
    problems = []
    for shard, keys in sorted(plan.shards().items()):
        commit = commits.get(shard)
        if commit is None:
            problems.append(f"{PLAN_FILE}: shard {shard} is planned ({len(keys)} episode(s)) "
                            "but not committed; re-run the job to finish it")
            continue
        planned = {k.split("/", 1)[1] for k in keys}
        found = set(commit.episode_ids) | set(commit.failed_episode_ids)
        if planned != found:
            problems.append(
                f"_commits/shard-{shard:05d}.json: episodes {sorted(found)} do not match the plan "
                f"{sorted(planned)} in {PLAN_FILE}")
    for shard in sorted(set(commits) - set(plan.shards())):
        problems.append(f"_commits/shard-{shard:05d}.json: shard {shard} is not in {PLAN_FILE}")
    return problems
