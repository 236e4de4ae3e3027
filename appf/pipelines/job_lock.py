"""One job per output at a time.

Local outputs: an OS lock (`fcntl.flock`) on `<out>/_lock`, held by the driver for the whole job;
the kernel drops it when the process dies, so a local lock is never stale. The file also holds
the holder's owner, host, pid and start time so that a refused job can name it.
(Hand-written on fcntl rather than `filelock`: filelock does not let a refused process read who
holds the lock.)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import getpass
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from appf.schemas import AppfError
from appf.storage import layout

LOCK_FILE = layout.LOCK_FILE


class JobLockedError(AppfError):
    """Another job holds the output; the message names it."""


def holder_info() -> dict[str, Any]:
    """Who this process is, for the lock file / lease."""
    try:
        owner = getpass.getuser()
    except (KeyError, OSError):
        owner = str(os.getuid())
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "started_at": now,
            "heartbeat_at": now}


def describe_holder(info: dict[str, Any]) -> str:
    return (f"{info.get('owner', '?')}@{info.get('host', '?')} pid {info.get('pid', '?')}, "
            f"started {info.get('started_at', '?')}")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (ValueError, OSError):
        return {}


def _write_holder(fd: int, info: dict[str, Any]) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:
        pass  # the lock itself is held; the holder note is best effort (e.g. disk full)


def _try_flock(fd: int, mode: int, wait_s: float) -> bool:
    """Non-blocking flock, retried for `wait_s` (a status probe holds the lock for an instant)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def lock_holder(out: str | Path) -> dict[str, Any] | None:
    """The running job's holder note, or None when no job holds the output. Writes nothing."""
    try:
        fd = os.open(Path(out) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd, fcntl.LOCK_SH, wait_s=0):
            return None  # closing the descriptor below drops the probe's lock
        return _read_holder(fd) or {"pid": "?"}
    finally:
        os.close(fd)


@contextlib.contextmanager
def local_job_lock(out: str | Path) -> Iterator[dict[str, Any]]:
    """Hold the output's lock for the duration of the context, or raise JobLockedError."""
    path = Path(out) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # unbuffered: nothing to flush on close
    try:
        if not _try_flock(fd, fcntl.LOCK_EX, wait_s=1.0):
            raise JobLockedError(
                f"{out} is in use by another appf job ({describe_holder(_read_holder(fd))}); "
                "wait for it to finish (`appf status` shows its progress) or stop it")
        info = holder_info()
        _write_holder(fd, info)
        yield info
    finally:
        os.close(fd)  # closing drops the lock
