"""Build NVlabs/FoundationStereo from a source checkout and a checkpoint directory.

There is no installable package: the worker image carries
  - a clone of https://github.com/NVlabs/FoundationStereo (the reference was read at 6e88068),
    named by $APPF_FOUNDATION_STEREO_CODE, with its Python requirements (timm, omegaconf, einops,
    and the modules its `Utils.py` imports at top level: open3d, trimesh, pandas, joblib, imageio);
  - the checkpoint directory (cfg.yaml + model_best_bp2.pth; see appf.annotators.weights).
The constructor would otherwise reach the network (timm `pretrained=True` and
`torch.hub.load('facebookresearch/dinov2', ...)`); both are redirected while it runs -- timm to
`pretrained=False` and the hub to the checkout's own `dinov2/` with `source='local',
pretrained=False` -- since every weight comes from the checkpoint anyway.

The model contract (what the fake in the tests implements too): `model(left, right, iters=N,
test_mode=True)` with (B, 3, H, W) float RGB in 0..255, H and W multiples of 32, returns the left
disparity (B, 1, H, W) in pixels.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from appf.annotators.depth.runtime import BackendUnavailableError, import_optional

CODE_ENV = "APPF_FOUNDATION_STEREO_CODE"
TRUST_ENV = "APPF_FOUNDATION_STEREO_TRUST_CHECKPOINT"
CHECKPOINT = "model_best_bp2.pth"
CONFIG = "cfg.yaml"


class _AttrDict(dict):
    """cfg.yaml as attribute access when omegaconf is not installed (fakes, tests)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def load_config(ckpt_dir: Path) -> Any:
    path = ckpt_dir / CONFIG
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("vit_size", "vitl")  # the released cfg.yaml may omit it (run_demo.py)
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return _AttrDict(data)
    return OmegaConf.create(data)


@contextlib.contextmanager
def _offline_construction(code_dir: Path) -> Iterator[None]:
    """Redirect timm and torch.hub downloads to local, weight-less construction."""
    import torch

    patches: list[tuple[Any, str, Any]] = []
    try:
        timm = importlib.import_module("timm")
    except ImportError:
        timm = None
    if timm is not None:
        original_create = timm.create_model

        def create_model(*args: Any, **kwargs: Any) -> Any:
            kwargs["pretrained"] = False
            return original_create(*args, **kwargs)

        patches.append((timm, "create_model", original_create))
        timm.create_model = create_model
    local_hub = code_dir / "dinov2"
    original_hub = torch.hub.load

    def hub_load(repo: str, model: str, *args: Any, **kwargs: Any) -> Any:
        if "dinov2" in str(repo) and local_hub.is_dir():
            kwargs.update(source="local", pretrained=False)
            return original_hub(str(local_hub), model, *args, **kwargs)
        if kwargs.get("source") == "local":
            return original_hub(repo, model, *args, **kwargs)
        # anything else would be fetched from GitHub: never at load time (no egress on workers)
        raise BackendUnavailableError(
            f"building FoundationStereo wanted torch.hub.load({repo!r}, {model!r}) from the "
            f"network; the checkout {code_dir} should provide it locally (its dinov2/ folder is "
            f"{'present' if local_hub.is_dir() else 'missing'}): use a complete clone of "
            "NVlabs/FoundationStereo")

    patches.append((torch.hub, "load", original_hub))
    torch.hub.load = hub_load
    try:
        yield
    finally:
        for obj, attr, value in patches:
            setattr(obj, attr, value)


def _import_model_class(code_dir: Path) -> Any:
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module("core.foundation_stereo")
    except ImportError as e:
        raise BackendUnavailableError(
            f"cannot import core.foundation_stereo from the FoundationStereo checkout {code_dir} "
            f"({type(e).__name__}: {e}); install the checkout's requirements (timm, omegaconf, "
            "einops, open3d, trimesh, ...) in the worker image") from e
    found = Path(module.__file__).resolve()
    if code_dir.resolve() not in found.parents:
        raise BackendUnavailableError(
            f"a different 'core' package ({found}) shadows the FoundationStereo checkout {code_dir}")
    return module.FoundationStereo


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle.UnpicklingError and friends
        if os.environ.get(TRUST_ENV, "") != "1":
            raise BackendUnavailableError(
                f"{path} does not load with torch.load(weights_only=True) ({type(e).__name__}); "
                f"if you trust this file (it is NVIDIA's release), set {TRUST_ENV}=1 to load it "
                "with weights_only=False (full pickle)") from e
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt


def load_foundation_stereo(code_dir: str | Path | None, ckpt_dir: str | Path) -> tuple[Any, int]:
    """(model, valid_iters): FoundationStereo with the checkpoint's weights, in eval mode, on the
    CPU, and the refinement iterations of its cfg.yaml (32 when absent)."""
    import_optional("torch", "foundation_stereo", "pip install torch")
    code = code_dir or os.environ.get(CODE_ENV)
    if not code:
        raise BackendUnavailableError(
            "depth backend 'foundation_stereo' needs a checkout of NVlabs/FoundationStereo (there "
            f"is no pip package); clone it into the worker image and set {CODE_ENV}=<its path>")
    code_path = Path(code).expanduser()
    if not (code_path / "core" / "foundation_stereo.py").is_file():
        raise BackendUnavailableError(
            f"{code_path} ({CODE_ENV}) is not a FoundationStereo checkout: "
            "core/foundation_stereo.py is missing")
    ckpt_path = Path(ckpt_dir)
    cls = _import_model_class(code_path)
    cfg = load_config(ckpt_path)
    with _offline_construction(code_path):
        model = cls(cfg)
    model.load_state_dict(_load_state(ckpt_path / CHECKPOINT))
    return model.eval(), int(cfg.get("valid_iters", 32) or 32)
