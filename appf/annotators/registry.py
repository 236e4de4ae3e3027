"""Name -> annotator factories. A new model is one file plus one line here."""

from __future__ import annotations

from functools import partial
from typing import Callable

from appf.annotators.depth.foundation_stereo import FoundationStereoDepth
from appf.annotators.depth.ground_truth import GroundTruthDepth
from appf.annotators.depth.moge import MoGe2Depth
from appf.annotators.depth.promptda import PromptDepthAnythingDepth
from appf.annotators.depth.sensor_fill import SensorDepthCompletion
from appf.annotators.depth.sgbm import SgbmStereoDepth
from appf.annotators.masks.ground_truth import GroundTruthMasker
from appf.annotators.protocols import DepthAnnotator, Masker
from appf.schemas import ConfigError

DEPTH_BACKENDS: dict[str, Callable[[], DepthAnnotator]] = {
    "ground_truth": GroundTruthDepth,
    # classical, no weights (the embedded defaults)
    "sgbm": SgbmStereoDepth,  # rectified stereo
    "sensor_fill": SensorDepthCompletion,  # RGB-D: edge-aware hole filling of the sensor's depth
    # learned; weights and optional packages: appf.annotators.weights, `appf models list`
    "foundation_stereo": FoundationStereoDepth,  # stereo (DROID), ViT-L
    "foundation_stereo_vits": partial(FoundationStereoDepth, weights="foundation-stereo-vits"),
    "promptda": PromptDepthAnythingDepth,  # RGB + sensor-depth prompt (AgiBot), ViT-L
    "promptda_vits": partial(PromptDepthAnythingDepth, weights="promptda-vits"),
    "moge2": MoGe2Depth,  # monocular metric (BridgeV2, chosen simulators), ViT-L
    "moge2_vits": partial(MoGe2Depth, weights="moge-2-vits-normal"),
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
