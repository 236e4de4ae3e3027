"""Typed configs from YAML/JSON files: shared by the job config and the training config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any], what: str, error: type[Exception]) -> T:
    """Build dataclass `cls` from `data`, refusing unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {what} key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**data)


def load_mapping(path: str | Path, what: str, error: type[Exception],
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A YAML/JSON mapping from `path`, with the non-None `overrides` winning over the file."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise error(f"cannot read {what} {path}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{what} {path} must be a mapping of keys to values")
    return {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
