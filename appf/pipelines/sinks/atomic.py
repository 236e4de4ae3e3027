"""Temporaries of whole-file local writes (`.NAME.tmp-XXXXXXXX`, see `appf.storage.Location`):
a failed or killed write leaves at most such a file, which `remove_stray_temps` cleans before the
next run."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

TEMP_MARK = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """A unique hidden sibling of `path` that `remove_stray_temps` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:8]}")


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
