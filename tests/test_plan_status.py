"""`appf plan` (what a job would do, writes nothing) and `appf status` (progress from markers)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appf.launch.cli import main
from appf.launch.frame_costs import depth_cost, job_costs
from appf.launch.job_plan import plan_job
from appf.launch.job_status import job_status
from appf.pipelines import graph
from pipeline_helpers import SMALL_SOURCE, run_local, small_config
from test_job_safety import HOLD_LOCK


def cfg_with(out, episodes: int):
    return small_config(out, source_options={**SMALL_SOURCE, "episodes": episodes})


def tree(root) -> dict:
    return {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_plan_of_an_extension_writes_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    run_local(cfg_with(out, 3))  # shards 0 (2 episodes) and 1 (1 episode), committed
    before = tree(out)
    plan = plan_job(cfg_with(out, 6), sample=2)
    assert (plan.episodes_found, plan.new_episodes, plan.planned_episodes) == (6, 3, 6)
    assert (plan.shards, plan.committed_shards, plan.shards_to_run) == (4, 2, 2)
    assert plan.episodes_to_run == 3 and plan.frames_per_episode == SMALL_SOURCE["steps"]
    assert plan.frames_to_run == 3 * SMALL_SOURCE["steps"]
    assert tree(out) == before
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(f"source: synthetic\nsource_options: {SMALL_SOURCE}\n"
                        f"episodes_per_shard: 2\nout: {out}\n")
    assert main(["plan", str(cfg_file), "--episodes", "6"]) == 0
    text = capsys.readouterr().out
    assert "episodes found: 6 (3 not yet planned" in text
    assert "to run: 2 shard(s), 3 episode(s)" in text and "frames to run" in text
    px = SMALL_SOURCE["height"] * SMALL_SOURCE["width"]
    assert plan.pixels_per_camera_frame == px and plan.cameras_per_frame == 1
    per_frame = sum(c.seconds_at(px) for c in job_costs().values() if c.device == "cpu")
    cpu_h = (per_frame + depth_cost("ground_truth").seconds_at(px)) * 48 / 3600
    assert f"estimated: {cpu_h:.3f} CPU hours" in text
    assert tree(out) == before


def test_plan_refuses_an_input_that_loses_planned_episodes(tmp_path):
    out = tmp_path / "o"
    run_local(cfg_with(out, 2))
    from appf.pipelines.shard_plan import read_plan, update_plan, write_plan

    plan = update_plan(read_plan(out), make_refs(4), 2, {0}).plan  # plan 2 more, uncommitted
    write_plan(out, plan)
    assert main(["plan", "--episodes", "2", "--out", str(out), "--episodes-per-shard", "2"]) == 2


def make_refs(n: int):
    from appf.pipelines.sources import make_source

    return make_source("synthetic", {**SMALL_SOURCE, "episodes": n}).list_refs()


def test_status_of_finished_stopped_and_running_jobs(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    real_write = graph.write_store_objects
    calls = {"n": 0}

    def crash_on_second_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated worker crash")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(graph, "write_store_objects", crash_on_second_shard)
    with pytest.raises(Exception, match="simulated worker crash"):
        run_local(cfg_with(out, 4))
    st = job_status(out)
    assert (st.committed_shards, st.planned_shards, st.planned_episodes) == (1, 2, 4)
    assert st.holder is None and not st.complete
    assert main(["status", str(out)]) == 0
    assert "stopped (re-run the job to resume)" in capsys.readouterr().out

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        st = job_status(out)
        assert st.holder["pid"] == holder.pid
        main(["status", str(out)])
        assert "running (" in (text := capsys.readouterr().out) and f"pid {holder.pid}" in text
    finally:
        holder.kill()
        holder.wait()

    monkeypatch.setattr(graph, "write_store_objects", real_write)
    run_local(cfg_with(out, 4))
    st = job_status(out)
    assert st.complete and st.done_episodes == 4 and st.written_episodes == 4
    assert st.rate_episodes_per_s and st.rate_episodes_per_s > 0
    main(["status", str(out)])
    text = capsys.readouterr().out
    assert ": complete" in text and "episodes 4/4 done" in text and "shards 2/2 committed" in text
    assert "failures by stage: none" in text and "ETA -" in text


def test_status_of_a_path_that_is_no_output(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "is not an appf output" in capsys.readouterr().err
