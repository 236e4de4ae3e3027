"""Content checksums of written outputs (a shard is a directory of files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_sha256(path: str | Path) -> str:
    """sha256 over every file below `path` (relative name + bytes, in sorted order)."""
    root = Path(path)
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode())
        h.update(b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
