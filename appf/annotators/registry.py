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
from appf.annotators.masks.kinematic import RobotSilhouette
from appf.annotators.masks.prompted import PromptedVideoMasker
from appf.annotators.masks.roboengine import RoboEngineSegmenter
from appf.annotators.masks.sam2 import Sam2VideoRefiner
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

def _prompted(name: str, roboengine: bool = True, kinematic: bool = False,
              sam2: str | None = "sam2.1-hiera-large"):
    def build() -> PromptedVideoMasker:
        return PromptedVideoMasker(
            name, segmenter=RoboEngineSegmenter() if roboengine else None,
            kinematic=RobotSilhouette() if kinematic else None,
            refiner=Sam2VideoRefiner(sam2) if sam2 else None)
    return build


MASK_BACKENDS: dict[str, Callable[[], Masker]] = {
    "ground_truth": GroundTruthMasker,  # simulators' segmentation ids
    # real data; code, weights and optional packages: appf.annotators.masks.*, `appf models list`
    "roboengine": _prompted("roboengine", sam2=None),  # per-frame masks + tracking
    "roboengine+sam2": _prompted("roboengine+sam2"),  # + SAM 2.1 Hiera-L refinement
    "roboengine+sam2_tiny": _prompted("roboengine+sam2_tiny", sam2="sam2.1-hiera-tiny"),
    # robot only, from joint positions + calibrated cameras (Franka Panda model of pybullet_data)
    "kinematic": _prompted("kinematic", roboengine=False, kinematic=True, sam2=None),
    "kinematic+sam2": _prompted("kinematic+sam2", roboengine=False, kinematic=True),
    "roboengine+kinematic+sam2": _prompted("roboengine+kinematic+sam2", kinematic=True),
}


def make_depth_annotator(name: str) -> DepthAnnotator:
    if name not in DEPTH_BACKENDS:
        raise ConfigError(f"unknown depth backend {name!r}; available: {sorted(DEPTH_BACKENDS)}")
    return DEPTH_BACKENDS[name]()


def mask_backend_unavailable(name: str) -> str | None:
    """Why backend `name` cannot load here (missing code or weights), without loading it."""
    masker = make_masker(name)
    check = getattr(masker, "unavailable_reason", None)
    return check() if check else None


def mask_provenance(name: str) -> str:
    """`name@weights_id:revision` of mask backend `name` as pinned (nothing is loaded; "none"
    when masks are off, the name alone for weight-free backends)."""
    if name == "none":
        return "none"
    masker = make_masker(name)
    return f"{name}@{masker.weights_id}:{masker.revision}" if masker.weights_id else name


def make_masker(name: str) -> Masker:
    if name not in MASK_BACKENDS:
        raise ConfigError(f"unknown mask backend {name!r}; available: {sorted(MASK_BACKENDS)}")
    return MASK_BACKENDS[name]()
