"""One job per object-store output: the lease object on a real S3-speaking server (moto on
loopback), held by another process, refused with its holder named, broken only when stale and
asked; status reads it; object-store I/O failures end the job with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from appf.launch.job_status import job_status, status_text
from appf.pipelines.io_errors import OutputIOError
from appf.pipelines.job_lease import acquire_lease, object_store_lease, read_lease
from appf.pipelines.job_lock import JobLockedError
from appf.storage import Location, layout
from pipeline_helpers import SMALL_SOURCE, run_local, small_config
from s3_server import s3_bucket, s3_endpoint  # noqa: F401 - fixtures

HOLD_LEASE = """
import sys, time
from appf.pipelines.job_lease import object_store_lease
from appf.storage import Location
with object_store_lease(Location(sys.argv[1]), heartbeat_s=0.2):
    print("leased", flush=True)
    time.sleep(120)
"""


def _holder(url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, url], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "leased"
    return proc


def test_live_lease_refuses_a_second_job_and_a_dead_one_is_taken_over(s3_bucket):
    url = f"{s3_bucket}/leased"
    loc = Location(url)
    holder = _holder(url)
    try:
        with pytest.raises(JobLockedError, match=rf"in use by another appf job \(.*pid {holder.pid},"):
            acquire_lease(loc, break_lock=True, stale_after_s=5)  # alive: never broken
        time.sleep(0.5)
        assert read_lease(loc)["heartbeat_at"] >= read_lease(loc)["started_at"]
        holder.send_signal(signal.SIGKILL)  # dies without releasing its lease
        holder.wait()
        assert read_lease(loc)["pid"] == holder.pid
        lease = acquire_lease(loc)  # its process is gone from this host: certain, taken over
        assert read_lease(loc)["lease_id"] == lease["lease_id"] and lease["pid"] == os.getpid()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_stale_lease_of_another_host_is_broken_only_on_request(s3_bucket):
    loc = Location(f"{s3_bucket}/stale")
    old = (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat(timespec="seconds")
    loc.write_bytes(layout.LOCK_FILE, json.dumps({
        "owner": "ana", "host": "worker-7", "pid": 4242, "started_at": old, "heartbeat_at": old,
        "lease_id": "theirs"}).encode())
    with pytest.raises(JobLockedError, match=r"ana@worker-7 pid 4242.*looks stale \(last heartbeat "
                                             r"1[89]\d\d s ago\); .* --break-lock"):
        acquire_lease(loc)
    fresh = datetime.now(timezone.utc).isoformat(timespec="seconds")
    loc.write_bytes(layout.LOCK_FILE, json.dumps({
        "owner": "ana", "host": "worker-7", "pid": 4242, "started_at": old, "heartbeat_at": fresh,
        "lease_id": "theirs"}).encode())
    with pytest.raises(JobLockedError, match="in use by another appf job"):
        acquire_lease(loc, break_lock=True)  # heart-beating: never broken
    loc.write_bytes(layout.LOCK_FILE, json.dumps({
        "owner": "ana", "host": "worker-7", "pid": 4242, "heartbeat_at": old,
        "lease_id": "theirs"}).encode())
    lease = acquire_lease(loc, break_lock=True)
    assert read_lease(loc)["lease_id"] == lease["lease_id"] != "theirs"


def test_job_on_s3_holds_the_lease_and_releases_it(s3_bucket):
    url = f"{s3_bucket}/job"
    holder = _holder(url)
    try:
        with pytest.raises(JobLockedError, match=f"pid {holder.pid}"):
            run_local(small_config(url, source_options={**SMALL_SOURCE, "episodes": 2}))
        assert not Location(url).exists(layout.JOB_FILE)  # refused before writing anything
    finally:
        holder.terminate()  # SIGTERM: the context manager does not run; the lease stays
        holder.wait()
    loc = Location(url)
    assert read_lease(loc)["pid"] == holder.pid  # a dead process of this host: taken over
    summary = run_local(small_config(url, source_options={**SMALL_SOURCE, "episodes": 2}))
    assert summary.episodes == 2 and read_lease(loc) is None  # released at the end
    st = job_status(loc)
    assert st.complete and st.holder is None and st.done_episodes == 2
    with object_store_lease(loc, heartbeat_s=0.2):  # a running job, as status sees it
        running = job_status(loc)
        assert running.holder["pid"] == os.getpid()
        assert "running (" in status_text(running, url)


@pytest.fixture
def fresh_s3fs():
    """s3fs caches filesystems (with their endpoint and credentials): start and end clean."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_object_store_ends_with_one_line(s3_endpoint, monkeypatch, fresh_s3fs):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with pytest.raises(OutputIOError, match=r"network error: .* after 2 attempt\(s\)") as e:
        run_local(small_config("s3://appf-nowhere/run", source_options={**SMALL_SOURCE,
                                                                         "episodes": 1}))
    assert "\n" not in str(e.value) and "s3://appf-nowhere/run" in str(e.value)


def test_missing_credentials_end_with_one_line(s3_bucket, monkeypatch, tmp_path, fresh_s3fs):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(OutputIOError, match="no credentials for the object store"):
        run_local(small_config(f"{s3_bucket}/nocreds", source_options={**SMALL_SOURCE,
                                                                         "episodes": 1}))
