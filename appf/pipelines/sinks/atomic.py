"""Control files written whole: temp file in the same directory, fsync, rename.

A reader sees the old file or the new one, never a part; a failed write (disk full, killed
process) leaves at most a `.NAME.tmp-XXXXXXXX` file, which `remove_stray_temps` cleans before the
next run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

TEMP_MARK = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """A unique hidden sibling of `path` that `remove_stray_temps` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}")


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write `data` to `path` so that `path` is either untouched or complete; `durable` also
    fsyncs before the rename (control files: a power cut must not leave an empty one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None:  # a failed write() names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def remove_stray_temps(root: str | Path, subdirs: tuple[str, ...] = ()) -> list[Path]:
    """Delete temporaries (files or directories named `.X.tmp-*`) that killed runs left in `root`
    and its `subdirs` (not recursive: shards hold many files). Call only while holding the job
    lock: a live writer's temporaries would be removed too."""
    removed = []
    for folder in (Path(root), *(Path(root) / d for d in subdirs)):
        removed += _remove_temps_in(folder)
    return removed


def _remove_temps_in(folder: Path) -> list[Path]:
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(f".*{TEMP_MARK}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
