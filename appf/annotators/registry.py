"""Name -> annotator factories. A new model is one file plus one line here.

Factories import their module on first use, so a job imports only the backends it runs (the
classical stereo stack pulls scipy.ndimage; learned ones torch)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from appf.annotators.protocols import DepthAnnotator, Masker
from appf.schemas import ConfigError


class _Lazy:
    """A factory for `module:Class(**kwargs)` that imports the module when called."""

    def __init__(self, target: str, **kwargs: Any):
        self.target, self.kwargs = target, kwargs

    def __call__(self) -> Any:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)(**self.kwargs)


_D = "appf.annotators.depth"
DEPTH_BACKENDS: dict[str, Callable[[], DepthAnnotator]] = {
    "ground_truth": _Lazy(f"{_D}.ground_truth:GroundTruthDepth"),
    # classical, no weights (the embedded defaults)
    "sgbm": _Lazy(f"{_D}.sgbm:SgbmStereoDepth"),  # rectified stereo
    # RGB-D: edge-aware hole filling of the sensor's depth
    "sensor_fill": _Lazy(f"{_D}.sensor_fill:SensorDepthCompletion"),
    # learned; weights and optional packages: appf.annotators.weights, `appf models list`
    "foundation_stereo": _Lazy(f"{_D}.foundation_stereo:FoundationStereoDepth"),  # stereo, ViT-L
    "foundation_stereo_vits": _Lazy(f"{_D}.foundation_stereo:FoundationStereoDepth",
                                    weights="foundation-stereo-vits"),
    # RGB + sensor-depth prompt (AgiBot), ViT-L
    "promptda": _Lazy(f"{_D}.promptda:PromptDepthAnythingDepth"),
    "promptda_vits": _Lazy(f"{_D}.promptda:PromptDepthAnythingDepth", weights="promptda-vits"),
    "moge2": _Lazy(f"{_D}.moge:MoGe2Depth"),  # monocular metric (BridgeV2, simulators), ViT-L
    "moge2_vits": _Lazy(f"{_D}.moge:MoGe2Depth", weights="moge-2-vits-normal"),
}


def _prompted(name: str, roboengine: bool = True, kinematic: bool = False,
              sam2: str | None = "sam2.1-hiera-large"):
    def build():
        from appf.annotators.masks.kinematic import RobotSilhouette
        from appf.annotators.masks.prompted import PromptedVideoMasker
        from appf.annotators.masks.roboengine import RoboEngineSegmenter
        from appf.annotators.masks.sam2 import Sam2VideoRefiner

        return PromptedVideoMasker(
            name, segmenter=RoboEngineSegmenter() if roboengine else None,
            kinematic=RobotSilhouette() if kinematic else None,
            refiner=Sam2VideoRefiner(sam2) if sam2 else None)
    return build


MASK_BACKENDS: dict[str, Callable[[], Masker]] = {
    # simulators' segmentation ids
    "ground_truth": _Lazy("appf.annotators.masks.ground_truth:GroundTruthMasker"),
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
