"""The persisted episode -> shard plan: stable under reordering, extension and removal."""

from __future__ import annotations

import pytest

from appf.pipelines.shard_plan import (
    ShardPlan, plan_problems, read_plan, update_plan, write_plan,
)
from appf.pipelines.sinks.commits import ShardCommit
from appf.schemas import ConfigError, EpisodeRef


def refs(*ids: str) -> list[EpisodeRef]:
    return [EpisodeRef("ds", eid, i) for i, eid in enumerate(ids)]


def shards_of(update) -> dict[str, int]:
    return {r.episode_id: r.index // update.plan.episodes_per_shard for r in update.refs}


def test_first_plan_fills_shards_in_input_order():
    u = update_plan(None, refs("a", "b", "c", "d", "e"), 2, set())
    assert shards_of(u) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    assert u.added == ["ds/a", "ds/b", "ds/c", "ds/d", "ds/e"] and u.left_committed == []


def test_reordered_input_keeps_every_shard():
    first = update_plan(None, refs("a", "b", "c", "d"), 2, set())
    again = update_plan(first.plan, refs("d", "c", "b", "a"), 2, {0, 1})
    assert shards_of(again) == shards_of(first) and again.added == []
    assert [r.episode_id for r in again.refs] == ["a", "b", "c", "d"]  # plan order


def test_new_episodes_never_enter_a_committed_shard():
    first = update_plan(None, refs("b", "d", "f"), 2, set())  # shard 1 holds f only
    # "a" and "c" sort before the planned episodes: positions would move them all
    ext = update_plan(first.plan, refs("a", "b", "c", "d", "f"), 2, committed={0, 1})
    assert shards_of(ext) == {"b": 0, "d": 0, "f": 1, "a": 2, "c": 2}
    assert ext.added == ["ds/a", "ds/c"]


def test_new_episodes_fill_the_open_last_shard():
    first = update_plan(None, refs("a", "b", "c"), 2, set())
    ext = update_plan(first.plan, refs("a", "b", "c", "d", "e"), 2, committed={0})
    assert shards_of(ext) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}


def test_removed_episode_of_committed_shard_is_kept():
    first = update_plan(None, refs("a", "b", "c"), 2, set())
    u = update_plan(first.plan, refs("a", "c"), 2, committed={0, 1})
    assert u.left_committed == ["ds/b"] and set(u.plan.index_of) == {"ds/a", "ds/b", "ds/c"}


def test_removed_episode_of_uncommitted_shard_is_refused():
    first = update_plan(None, refs("a", "b", "c"), 2, set())
    with pytest.raises(ConfigError, match=r"ds/c \(shard 1\).*new --out"):
        update_plan(first.plan, refs("a", "b"), 2, committed={0}, out="/x")


def test_duplicate_episode_ids_and_changed_shard_size_are_refused():
    with pytest.raises(ConfigError, match="lists episode ds/a twice"):
        update_plan(None, refs("a", "a"), 2, set())
    first = update_plan(None, refs("a"), 2, set())
    with pytest.raises(ConfigError, match="episodes_per_shard 2"):
        update_plan(first.plan, refs("a"), 3, set())


def test_plan_round_trip_and_corrupt_file(tmp_path):
    plan = update_plan(None, refs("a", "b", "c"), 2, set()).plan
    write_plan(tmp_path, plan)
    assert read_plan(tmp_path) == plan
    (tmp_path / "_plan.json").write_text("")
    with pytest.raises(ConfigError, match="_plan.json is not a valid shard plan"):
        read_plan(tmp_path)


def _commit(shard: int, ok: list[str], failed: list[str] = ()) -> ShardCommit:
    return ShardCommit(shard, None, "", "", len(ok), 0, len(failed), 0, 0, None,
                       list(ok), list(failed))


def test_plan_problems_compare_plan_and_markers():
    plan = ShardPlan(2, {"ds/a": 0, "ds/b": 1, "ds/c": 2})
    assert plan_problems(plan, {0: _commit(0, ["a"], ["b"]), 1: _commit(1, ["c"])}) == []
    problems = plan_problems(plan, {0: _commit(0, ["a"]), 3: _commit(3, ["z"])})
    assert any("shard-00000.json" in p and "'b'" in p for p in problems)
    assert any("shard 1 is planned" in p for p in problems)
    assert any("shard-00003.json: shard 3 is not in _plan.json" in p for p in problems)
