"""The output layout (DESIGN §4): every key an appf output holds, in one place.

```
manifest.json  _job.json  _plan.json  _lock  README.md
pointclouds/shard-NNNNN.zarr/...      sft/records-NNNNN.parquet   failures/failures-NNNNN.parquet
_commits/shard-NNNNN.json             commit markers (the shard unit k is committed iff its marker exists)
_staging/shard-NNNNN/ep-IIIIIIII-fTTTTTT.npz|failed.json   per-episode staging, removed after a run
```
Keys are relative to the output root (see `appf.storage.location.Location`).
"""

from __future__ import annotations

import re

MANIFEST = "manifest.json"
JOB_FILE = "_job.json"
PLAN_FILE = "_plan.json"
LOCK_FILE = "_lock"
CARD = "README.md"
POINTCLOUDS_DIR = "pointclouds"
SFT_DIR = "sft"
FAILURES_DIR = "failures"
COMMITS_DIR = "_commits"
STAGING_DIR = "_staging"

_SHARD_NUMBER = re.compile(r"(?:shard|records|failures)-(\d{5,})")
_STAGED = re.compile(r"ep-(\d+)-f(\d+)\.(npz|failed\.json)$")


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.zarr"


def shard_zarr_key(shard: int) -> str:
    return f"{POINTCLOUDS_DIR}/{shard_name(shard)}"


def sft_key(shard: int) -> str:
    return f"{SFT_DIR}/records-{shard:05d}.parquet"


def failures_key(shard: int) -> str:
    return f"{FAILURES_DIR}/failures-{shard:05d}.parquet"


def marker_key(shard: int) -> str:
    return f"{COMMITS_DIR}/shard-{shard:05d}.json"


def unit_prefixes(shard: int) -> tuple[str, str, str]:
    """Every key of shard unit `shard` starts with one of these (the zarr store is a prefix)."""
    return shard_zarr_key(shard), sft_key(shard), failures_key(shard)


def staging_prefix(shard: int) -> str:
    return f"{STAGING_DIR}/shard-{shard:05d}"


def staged_key(shard: int, index: int, frames: int, failed: bool = False) -> str:
    suffix = "failed.json" if failed else "npz"
    return f"{staging_prefix(shard)}/ep-{index:08d}-f{frames:06d}.{suffix}"


def parse_staged_key(key: str) -> tuple[int, int, int] | None:
    """(shard, episode index, frames) of a staging key, None for anything else."""
    m = _STAGED.search(key)
    shard = shard_of_key(key)
    if not m or shard is None:
        return None
    return shard, int(m.group(1)), int(m.group(2))


def shard_of_key(key: str) -> int | None:
    """The shard number a key belongs to (zarr store, tables, marker, staging), else None."""
    m = _SHARD_NUMBER.search(key)
    return int(m.group(1)) if m else None


def is_temporary(key: str) -> bool:
    """Leftovers of an interrupted local write (`.name.tmp-XXXX`)."""
    return any(part.startswith(".") and ".tmp-" in part for part in key.split("/"))
