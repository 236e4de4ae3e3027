"""One job per output on object stores: a lease object `<out>/_lock` (owner, host, pid, start,
heartbeat), created with a conditional put (S3 `If-None-Match: *`; stores without it fall back to
put + read-back), refreshed by a heartbeat thread and deleted at the end. A lease whose holder ran
on this host and whose process is gone is a dead job's for certain and is taken over; a lease whose
heartbeat is older than `stale_after_s` probably is, and is broken only when asked (`--break-lock`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import threading
import uuid
from typing import Any, Iterator

from appf.pipelines.job_lock import JobLockedError, describe_holder, holder_info
from appf.storage import Location, layout

HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def read_lease(loc: Location) -> dict[str, Any] | None:
    """The lease on `loc`, or None when there is none."""
    try:
        lease = json.loads(loc.read_bytes(layout.LOCK_FILE))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # a torn or foreign object: treated as a lease of unknown age
    return lease if isinstance(lease, dict) else {}


def lease_age_s(lease: dict[str, Any]) -> float | None:
    """Seconds since the lease's last heartbeat (None when unknown)."""
    try:
        beat = _dt.datetime.fromisoformat(lease["heartbeat_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (_now() - beat).total_seconds()


def holder_is_dead_here(lease: dict[str, Any]) -> bool:
    """True when the lease's process ran on this host and no longer exists."""
    pid = lease.get("pid")
    if lease.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, another user's
    return False


def _refuse(loc: Location, lease: dict[str, Any], stale_after_s: float) -> JobLockedError:
    age = lease_age_s(lease)
    who = describe_holder(lease)
    if age is None or age > stale_after_s:
        last = "unknown" if age is None else f"{age:.0f} s ago"
        return JobLockedError(
            f"{loc.url} holds a lease of another appf job ({who}) that looks stale (last "
            f"heartbeat {last}); if that job is dead, re-run with --break-lock")
    return JobLockedError(f"{loc.url} is in use by another appf job ({who}, last heartbeat "
                          f"{age:.0f} s ago); wait for it to finish (`appf status` shows its "
                          "progress) or stop it")


def _put_new(loc: Location, lease: dict[str, Any]) -> bool:
    """Create the lease object if none exists; False when another job created one first."""
    data = json.dumps(lease).encode()
    try:
        loc.fs.pipe_file(loc.path(layout.LOCK_FILE), data, mode="create")
    except FileExistsError:
        return False
    except TypeError:  # a filesystem without exclusive create: put, then read back
        if loc.exists(layout.LOCK_FILE):
            return False
        loc.write_bytes(layout.LOCK_FILE, data)
    return (read_lease(loc) or {}).get("lease_id") == lease["lease_id"]


def acquire_lease(loc: Location, break_lock: bool = False,
                  stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
    """Take the lease on `loc` (JobLockedError naming the holder otherwise)."""
    lease = {**holder_info(), "lease_id": uuid.uuid4().hex}
    if _put_new(loc, lease):
        return lease
    current = read_lease(loc) or {}
    age = lease_age_s(current)
    stale = age is None or age > stale_after_s
    if not (holder_is_dead_here(current) or (break_lock and stale)):
        raise _refuse(loc, current, stale_after_s)
    loc.delete(layout.LOCK_FILE)  # a dead job's lease
    if not _put_new(loc, lease):
        raise _refuse(loc, read_lease(loc) or {}, stale_after_s)
    return lease


class _Heartbeat(threading.Thread):
    """Refreshes the lease every `every_s` while it is still ours."""

    def __init__(self, loc: Location, lease: dict[str, Any], every_s: float):
        super().__init__(daemon=True)
        self.loc, self.lease, self.every_s = loc, lease, every_s
        self.stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            try:
                if (read_lease(self.loc) or {}).get("lease_id") != self.lease["lease_id"]:
                    self.lost = True  # broken by another job: stop refreshing it
                    return
                self.lease["heartbeat_at"] = _now().isoformat(timespec="seconds")
                self.loc.write_bytes(layout.LOCK_FILE, json.dumps(self.lease).encode())
            except Exception:  # noqa: BLE001 - a missed beat; the job reports its own I/O errors
                continue


@contextlib.contextmanager
def object_store_lease(loc: Location, break_lock: bool = False, heartbeat_s: float = HEARTBEAT_S,
                       stale_after_s: float = STALE_AFTER_S) -> Iterator[dict[str, Any]]:
    """Hold the lease on `loc` for the duration of the context."""
    lease = acquire_lease(loc, break_lock, stale_after_s)
    beat = _Heartbeat(loc, lease, heartbeat_s)
    beat.start()
    try:
        yield lease
    finally:
        beat.stop.set()
        beat.join(timeout=10)
        with contextlib.suppress(Exception):  # unreachable store: the lease goes stale instead
            if (read_lease(loc) or {}).get("lease_id") == lease["lease_id"]:
                loc.delete(layout.LOCK_FILE)
