"""Name -> annotator factories. A new model is one file plus one line here."""

from __future__ import annotations

from typing import Callable

from appf.annotators.depth.ground_truth import GroundTruthDepth
from appf.annotators.masks.ground_truth import GroundTruthMasker
from appf.annotators.protocols import DepthAnnotator, Masker
from appf.schemas import ConfigError

DEPTH_BACKENDS: dict[str, Callable[[], DepthAnnotator]] = {
    "ground_truth": GroundTruthDepth,
}

MASK_BACKENDS: dict[str, Callable[[], Masker]] = {
    "ground_truth": GroundTruthMasker,
}


def make_depth_annotator(name: str) -> DepthAnnotator:
    if name not in DEPTH_BACKENDS:
        raise ConfigError(f"unknown depth backend {name!r}; available: {sorted(DEPTH_BACKENDS)}")
    return DEPTH_BACKENDS[name]()


def make_masker(name: str) -> Masker:
    if name not in MASK_BACKENDS:
        raise ConfigError(f"unknown mask backend {name!r}; available: {sorted(MASK_BACKENDS)}")
    return MASK_BACKENDS[name]()
