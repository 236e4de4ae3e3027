"""Job semantics on a real output: the plan extends, one job per output, atomic control files,
and I/O failures that end the job with one line and leave committed shards alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from appf.launch.validate_output import validate_output
from appf.pipelines.io_errors import OutputIOError
from appf.pipelines.job_lock import JobLockedError
from disk_helpers import fill_up, remount, small_tmpfs
from pipeline_helpers import SMALL_SOURCE, run_local, shard_checksums, small_config


def cfg_with(out, episodes: int, **kw):
    return small_config(out, source_options={**SMALL_SOURCE, "episodes": episodes}, **kw)


def test_more_episodes_on_a_resumed_output_extends_it(tmp_path):
    out = tmp_path / "o"
    first = run_local(cfg_with(out, 2, episodes_per_shard=4))
    assert first.episodes == 2 and first.shards == 1
    before = shard_checksums(out)
    more = run_local(cfg_with(out, 4, episodes_per_shard=4))  # was: 2 written, no failure
    assert (more.planned_episodes, more.episodes, more.skipped_episodes) == (4, 4, 2)
    assert more.shards == 2 and shard_checksums(out).items() >= before.items()
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["planned_episodes"] == 4 and m["shards"][1]["episodes"] == 2
    assert validate_output(out) == []
    fewer = run_local(cfg_with(out, 1, episodes_per_shard=4))  # committed output stays
    assert (fewer.planned_episodes, fewer.episodes) == (4, 4)
    assert validate_output(out) == []


def test_validate_reports_a_planned_shard_without_commit(tmp_path):
    out = tmp_path / "o"
    run_local(cfg_with(out, 2))
    (out / "_commits/shard-00000.json").unlink()
    assert any("shard 0 is planned" in p for p in validate_output(out))


HOLD_LOCK = """
import sys, time
from appf.pipelines.job_lock import local_job_lock
with local_job_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_job_on_one_output_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobLockedError, match=rf"in use by another appf job \(.*pid {holder.pid},"):
            run_local(cfg_with(out, 1))
        assert not (out / "_commits").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run_local(cfg_with(out, 1)).episodes == 1  # the kernel dropped the dead holder's lock


def test_empty_job_file_of_a_failed_start_is_replaced_and_temps_cleaned(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "_job.json").write_text("")  # what a disk-full start left before atomic writes
    run_local(cfg_with(out, 2))
    json.loads((out / "_job.json").read_text())
    for stray in (out / ".manifest.json.tmp-dead", out / "_commits/.shard-00000.json.tmp-dead",
                  out / "sft/.records-00000.parquet.tmp-dead"):
        stray.write_text("partial")
    (out / "_job.json").write_text("[]")
    with pytest.raises(Exception, match=r"_job.json is unreadable .* committed shards"):
        run_local(cfg_with(out, 2))
    (out / "_job.json").unlink()
    run_local(cfg_with(out, 2))
    assert not list(out.rglob(".*.tmp-*")) and validate_output(out) == []


def test_disk_full_at_start_leaves_no_broken_job_file(tmp_path):
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "o"
        filler = fill_up(disk)
        with pytest.raises(OutputIOError, match=r"no space left.*ENOSPC on .*/o/") as e:
            run_local(cfg_with(out, 2))
        assert "\n" not in str(e.value)
        assert not (out / "_job.json").exists() and not list(out.glob(".*tmp-*"))
        filler.unlink()
        assert run_local(cfg_with(out, 2)).episodes == 2
        assert validate_output(out) == []


def test_disk_full_mid_job_changes_nothing_committed_and_resumes(tmp_path):
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        out = disk / "o"
        run_local(cfg_with(out, 2))
        before = shard_checksums(out)
        marker = (out / "_commits/shard-00000.json").read_bytes()
        filler = fill_up(disk, leave_bytes=64 * 1024)  # enough to start, not to write a shard
        with pytest.raises(OutputIOError, match=rf"ENOSPC on {out}/") as e:
            run_local(cfg_with(out, 4))
        assert "\n" not in str(e.value) and "committed shards are unchanged" in str(e.value)
        assert shard_checksums(out) == before
        assert (out / "_commits/shard-00000.json").read_bytes() == marker
        filler.unlink()
        assert run_local(cfg_with(out, 4)).episodes == 4 and validate_output(out) == []


def test_read_only_output_ends_with_one_line_from_the_cli(tmp_path):
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        out = disk / "o"
        run_local(cfg_with(out, 1))
        before = shard_checksums(out)
        remount(disk, "ro")
        try:
            r = subprocess.run(
                [sys.executable, "-m", "appf.launch.cli", "reannotate", "--episodes", "2",
                 "--out", str(out), "--episodes-per-shard", "2", "--n-points", "128"],
                capture_output=True, text=True, timeout=300)
        finally:
            remount(disk, "rw")
        assert r.returncode == 2, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("appf: error:")]
        assert len(errors) == 1 and "EROFS" in errors[0] and str(out) in errors[0], r.stderr
        assert "Traceback" not in r.stderr
        assert shard_checksums(out) == before


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop the permission-override capabilities")
def test_permission_denied_ends_with_one_line(tmp_path):
    out = tmp_path / "o"
    out.mkdir(mode=0o555)
    # root without CAP_DAC_OVERRIDE obeys permission bits: a real EACCES on the output
    drop = "-dac_override,-dac_read_search"
    r = subprocess.run(
        ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-m",
         "appf.launch.cli", "reannotate", "--episodes", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("appf: error:")]
    assert len(errors) == 1 and "EACCES" in errors[0] and str(out) in errors[0], r.stderr
    assert "Traceback" not in r.stderr and list(out.iterdir()) == []
