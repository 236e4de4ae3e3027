"""glibc malloc settings for training processes: keep freed activation memory in the heap.

A phase-2 step allocates and frees hundreds of MB of point-encoder activations. With glibc's
defaults, blocks above the (dynamic) mmap threshold are mmap'ed and unmapped on free, and the top
of the heap is trimmed back to the kernel, so every step page-faults the same memory back in
(the kernel's time, "system" CPU). The settings here make malloc serve every block from the heap
(`M_MMAP_MAX` 0: no mmap'ed blocks) and never trim it (`M_TRIM_THRESHOLD` above any heap), so a
step reuses the previous step's pages. The cost: a process keeps its peak heap until it exits.

`apply_training_allocator` sets them in this process (`mallopt`, effective for later
allocations) and exports glibc's environment variables so processes started from it (torchrun
workers, spawned DataLoader workers) start with them. Variables already set by the user win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

# glibc <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

TRIM_THRESHOLD_BYTES = 1 << 40  # larger than any heap: never give the heap top back
MMAP_MAX_BLOCKS = 0  # no block is mmap'ed: large tensors come from the heap and are reused

# glibc reads these at process start (the trailing underscore is part of the name)
ENV_SETTINGS = {"MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
                "MALLOC_MMAP_MAX_": str(MMAP_MAX_BLOCKS)}


@dataclass(frozen=True)
class AllocatorReport:
    """What `apply_training_allocator` did: `applied` is False (with the reason) off glibc or
    when a setting was refused."""

    applied: bool
    detail: str


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def _user_value(name: str) -> int | None:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def apply_training_allocator(environ: dict[str, str] | None = None) -> AllocatorReport:
    """Set the heap-keeping malloc settings in this process and export them to child processes.

    Values the user already put in the environment (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_MAX_`)
    are kept and applied instead. Call it before the training process allocates its tensors."""
    env = os.environ if environ is None else environ
    for name, value in ENV_SETTINGS.items():
        env.setdefault(name, value)
    libc = _glibc()
    if libc is None:
        return AllocatorReport(False, "not glibc: malloc settings left at their defaults")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    trim = _user_value("MALLOC_TRIM_THRESHOLD_")
    mmap_max = _user_value("MALLOC_MMAP_MAX_")
    trim = TRIM_THRESHOLD_BYTES if trim is None else trim
    mmap_max = MMAP_MAX_BLOCKS if mmap_max is None else mmap_max
    # mallopt takes an int: a threshold above INT_MAX is clamped (2 GiB still exceeds any trim step)
    ok_trim = libc.mallopt(M_TRIM_THRESHOLD, min(trim, 2**31 - 1))
    ok_mmap = libc.mallopt(M_MMAP_MAX, mmap_max)
    if not (ok_trim and ok_mmap):
        return AllocatorReport(False, f"glibc refused mallopt (trim ok={ok_trim}, mmap_max ok={ok_mmap})")
    return AllocatorReport(True, f"glibc malloc: trim threshold {min(trim, 2**31 - 1)} B, "
                                 f"mmap max {mmap_max} blocks")
