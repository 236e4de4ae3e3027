"""Source plug-ins: one file per dataset. Register a new one in SOURCES (name -> module:class)."""

from __future__ import annotations

import importlib
from typing import Any

from appf.pipelines.sources.base import Source, SourceInfo
from appf.schemas import ConfigError

SOURCES: dict[str, str] = {
    "synthetic": "appf.pipelines.sources.synthetic:SyntheticSource",
    "droid_raw": "appf.pipelines.sources.droid_raw:DroidRawSource",
    "agibot": "appf.pipelines.sources.agibot:AgiBotSource",
    "bridge_raw": "appf.pipelines.sources.bridge_raw:BridgeRawSource",
    "droid_rlds": "appf.pipelines.sources.droid_rlds:DroidRldsSource",
    "bridge_rlds": "appf.pipelines.sources.bridge_rlds:BridgeRldsSource",
    "robotwin": "appf.pipelines.sources.robotwin:RoboTwinSource",
    "calvin": "appf.pipelines.sources.calvin:CalvinSource",
    "rlbench": "appf.pipelines.sources.rlbench:RLBenchSource",
    "maniskill": "appf.pipelines.sources.maniskill:ManiSkillSource",
    "lerobot": "appf.pipelines.sources.lerobot:LeRobotSource",
    "robosuite": "appf.pipelines.sources.robosuite:RobosuiteSource",
}


def source_class(name: str) -> type:
    """A registered source, or a user plug-in named as "package.module:Class"."""
    target = SOURCES.get(name) or (name if ":" in name else None)
    if target is None:
        raise ConfigError(f"unknown source {name!r}; available: {sorted(SOURCES)} (see `appf sources`), "
                          "or a plug-in given as package.module:Class")
    module, cls = target.split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load source {name!r} ({target}): {e}") from e


def make_source(name: str, options: dict[str, Any] | None = None) -> Source:
    return source_class(name)(**(options or {}))


__all__ = ["SOURCES", "Source", "SourceInfo", "make_source", "source_class"]
