"""Expert checkpoints: one ``torch.save`` file per saved step, written atomically.

Every checkpoint carries the config, the data spec, the normaliser statistics, the code and
schema versions, the model and EMA weights, and the optimiser / LR-scheduler state needed to
resume. Files: ``RUN_DIR/checkpoints/step-00001000.pt``; the latest is the highest step.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from appf import __version__
from appf.schemas import SCHEMA_VERSION
from appf.training.errors import TrainingError

FORMAT = "appf-expert-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint of a run, by increasing step."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run folder."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        latest = latest_checkpoint(p)
        if latest is not None:
            return latest
        raise TrainingError(f"run folder {p} has no checkpoint (expected {checkpoint_dir(p)}/step-*.pt)")
    raise TrainingError(f"checkpoint {p} does not exist; pass a step-*.pt file or a run folder")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus format/version fields atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "code_version": __version__,
            "schema_version": SCHEMA_VERSION, **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure becomes one clear error
        raise TrainingError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TrainingError(f"{path} is not an appf expert checkpoint (no format={FORMAT!r} field)")
    if data.get("format_version") != FORMAT_VERSION:
        raise TrainingError(f"checkpoint {path} has format version {data.get('format_version')}, this "
                            f"appf ({__version__}) reads version {FORMAT_VERSION}; use the appf "
                            f"version that wrote it ({data.get('code_version')})")
    data["path"] = str(path)
    return data


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` latest checkpoints."""
    for _, p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)
