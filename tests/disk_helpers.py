"""Real failing file systems for the I/O-error tests: a small tmpfs that can be filled up or
remounted read-only (needs root and mount rights; the tests skip where these are missing)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of `folder` until it is full (or `leave_bytes` are left)."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        block = b"\0" * 4096
        try:
            while True:
                st = os.statvfs(folder)
                if st.f_bavail * st.f_frsize <= leave_bytes:
                    break
                f.write(block)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)
