"""`appf validate`, part 1: the structure of manifest.json (object, keys, types), each finding
naming the file and the field."""

from __future__ import annotations

import json
from typing import Any

from appf.schemas import SCHEMA_VERSION
from appf.storage import Location, layout

# field -> allowed JSON types of one manifest shard entry (MANIFEST_SHARD_SCHEMA)
SHARD_FIELDS: dict[str, tuple[type, ...]] = {
    "shard": (int,), "path": (str, type(None)), "sft_path": (str,), "failures_path": (str,),
    "episodes": (int,), "frames": (int,), "failures": (int,), "sft_records": (int,),
    "checksum": (str, type(None)),
}
TOP_FIELDS: dict[str, tuple[type, ...]] = {
    "schema_version": (str, int), "config": (dict,), "counts": (dict,), "shards": (list,),
}
COUNT_FIELDS = ("planned_episodes", "episodes", "frames", "points", "sft_records", "failures", "shards")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _type_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false is not a count
        return bool in allowed
    return isinstance(value, allowed)


def _field_problems(where: str, obj: dict, spec: dict[str, tuple[type, ...]]) -> list[str]:
    problems = []
    for name, allowed in spec.items():
        if name not in obj:
            problems.append(f"{where} field {name}: missing")
        elif not _type_ok(obj[name], allowed):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            problems.append(f"{where} field {name}: expected {want}, found "
                            f"{_type_name(obj[name])} {obj[name]!r:.40}")
    return problems


def read_manifest(loc: Location) -> tuple[dict | None, list[str]]:
    """The manifest when its structure can be trusted for further checks, and its problems."""
    name = layout.MANIFEST
    if not loc.exists(name):
        return None, [f"{name}: missing; is {loc.url} an appf output (or did the job not finish)?"]
    try:
        manifest = json.loads(loc.read_bytes(name))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, [f"{name}: not valid JSON: {e}"]
    if not isinstance(manifest, dict):
        return None, [f"{name}: expected a JSON object, found {_type_name(manifest)}"]
    problems = _field_problems(name, manifest, TOP_FIELDS)
    if manifest.get("schema_version") != SCHEMA_VERSION and "schema_version" in manifest:
        problems.append(f"{name} field schema_version: expected {SCHEMA_VERSION}, "
                        f"found {manifest['schema_version']!r}")
    counts = manifest.get("counts")
    if isinstance(counts, dict):
        problems += _field_problems(f"{name} counts", counts, {k: (int,) for k in COUNT_FIELDS})
    shards = manifest.get("shards") if isinstance(manifest.get("shards"), list) else []
    good = []
    for i, entry in enumerate(shards):
        where = f"{name} shards[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object, found {_type_name(entry)}")
            continue
        found = _field_problems(where, entry, SHARD_FIELDS)
        problems += found
        if not found:
            good.append(entry)
    manifest["shards"] = good  # only well-formed entries go on to the cross-checks
    return manifest, problems


def count_problems(manifest: dict) -> list[str]:
    """counts.* against the sum over the shard entries."""
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        return []
    shards = manifest["shards"]
    sums = {k: sum(e[k] for e in shards) for k in ("episodes", "frames", "sft_records", "failures")}
    sums["shards"] = len(shards)
    return [f"{layout.MANIFEST} field counts.{k}: {counts.get(k)!r}, but the shard entries sum to {v}"
            for k, v in sums.items() if _type_ok(counts.get(k), (int,)) and counts[k] != v]
