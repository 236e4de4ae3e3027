"""The learned backends end to end on CPU through the real Beam RunInference path, with tiny
random weights loaded the way a worker loads real ones (from a weights directory): the real
PromptDepthAnything architecture (transformers), MoGe-2's own model class with a small head, and
a FAKE FoundationStereo (no package exists) in a fake source checkout with the real contract."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from appf.annotators.apply import annotate_episode_depth
from appf.annotators.depth.evaluate import simulate_sensor_holes
from appf.annotators.depth.moge import focal_from_fx
from appf.annotators.depth.runtime import BackendUnavailableError
from appf.annotators.protocols import DepthBatch
from appf.annotators.registry import make_depth_annotator
from appf.annotators.weights import WeightsNotFoundError
from appf.pipelines.sources.synthetic import SyntheticSource
from appf.transforms.depth_metrics import depth_metrics


# ---------------------------------------------------------------------------------------------
# helpers


def small_episode(frames: int = 3, h: int = 72, w: int = 96, seed: int = 1,
                  calibrated: bool = True, sensor_holes: bool = False):
    """A synthetic stereo episode cut to `frames` steps (the source renders at least 16)."""
    src = SyntheticSource(episodes=1, steps=16, height=h, width=w, seed=seed)
    ep = src.read(src.list_refs()[0])
    cut = slice(0, frames)
    steps = dataclasses.replace(ep.steps, **{f.name: getattr(ep.steps, f.name)[cut]
                                             for f in dataclasses.fields(ep.steps)})
    cam = ep.cameras["front"]
    depth = cam.depth[cut]
    if sensor_holes:
        depth = np.stack([simulate_sensor_holes(d, seed=i) for i, d in enumerate(depth)])
    cam = dataclasses.replace(cam, rgb=cam.rgb[cut], rgb_right=cam.rgb_right[cut], depth=depth,
                              segmentation=cam.segmentation[cut],
                              intrinsics=cam.intrinsics if calibrated else None,
                              intrinsics_unknown=not calibrated)
    return dataclasses.replace(ep, steps=steps, cameras={"front": cam}), ep.cameras["front"]


def run_inference(backend: str, episodes, batch_frames: int, tmp_path: Path,
                  episodes_per_batch: int = 1) -> dict:
    """The real path: beam.Create(EpisodeWork) | RunInference(DepthHandler) on FnApiRunner."""
    import apache_beam as beam

    from appf.launch.runners import local_options
    from appf.pipelines.inference import DepthHandler, annotation_pass
    from appf.pipelines.work import EpisodeWork
    from appf.schemas import EpisodeRef

    out_dir = tmp_path / f"beam-{backend}"
    out_dir.mkdir()
    works = [EpisodeWork(EpisodeRef(ep.dataset, f"{ep.episode_id}-{i}", i), 0, ep)
             for i, ep in enumerate(episodes)]

    def save(element) -> None:
        (out_dir / f"{element.index if hasattr(element, 'index') else element.ref.index}.pkl"
         ).write_bytes(pickle.dumps(element))

    with beam.Pipeline(options=local_options(1)) as p:
        _ = (p | beam.Create(works) | annotation_pass(DepthHandler(backend, batch_frames, None, episodes_per_batch))
             | beam.Map(save))
    results = {int(f.stem): pickle.loads(f.read_bytes()) for f in out_dir.glob("*.pkl")}
    for r in results.values():
        assert isinstance(r, EpisodeWork), f"episode failed: {r}"
        assert getattr(r, "failure", None) is None, f"episode failed: {r.failure}"
    return {i: r.episode for i, r in results.items()}


# ---------------------------------------------------------------------------------------------
# PromptDepthAnything (transformers)


@pytest.fixture(scope="module")
def promptda_dir(tmp_path_factory):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        image_size=56, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    cfg = transformers.PromptDepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="metric")
    model = transformers.PromptDepthAnythingForDepthEstimation(cfg)
    d = tmp_path_factory.mktemp("promptda-tiny")
    model.save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({
        "size": {"height": 112, "width": 112}, "ensure_multiple_of": 14, "keep_aspect_ratio": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
    return d


def test_promptda_through_runinference(promptda_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITL", str(promptda_dir))
    ep, _ = small_episode(frames=3, sensor_holes=True)
    out = run_inference("promptda", [ep], batch_frames=2, tmp_path=tmp_path)[0]
    cam, sensor = out.cameras["front"], ep.cameras["front"].depth
    assert cam.depth.shape == (3, 72, 96) and cam.depth.dtype == np.float32
    assert cam.depth_provenance == (f"promptda@depth-anything/prompt-depth-anything-vitl-hf:"
                                    f"local:{promptda_dir}")
    np.testing.assert_array_equal(cam.intrinsics, ep.cameras["front"].intrinsics)
    for t in range(3):  # metric output is bounded by the (hole-filled) prompt's range
        valid = sensor[t][sensor[t] > 0]
        assert (cam.depth[t] > 0).all()
        assert cam.depth[t].min() >= valid.min() - 1e-3 and cam.depth[t].max() <= valid.max() + 1e-3
    # the Beam path equals calling the backend directly on the same frames
    direct = make_depth_annotator("promptda")
    direct.load()
    ref = annotate_episode_depth(ep, direct, batch_frames=2)
    np.testing.assert_allclose(cam.depth, ref.cameras["front"].depth, rtol=1e-5, atol=1e-6)


def test_promptda_frames_of_two_episodes_share_batches_in_runinference(promptda_dir, monkeypatch,
                                                                        tmp_path):
    """RunInference hands the handler both episodes; their 3 + 3 frames run as batches of 4 and 2
    across the episode boundary, and each episode gets the depth it gets alone."""
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITL", str(promptda_dir))
    first, _ = small_episode(frames=3, sensor_holes=True, seed=1)
    second, _ = small_episode(frames=3, sensor_holes=True, seed=2)
    out = run_inference("promptda", [first, second], batch_frames=4, tmp_path=tmp_path,
                        episodes_per_batch=2)
    direct = make_depth_annotator("promptda")
    direct.load()
    for i, ep in enumerate((first, second)):
        ref = annotate_episode_depth(ep, direct, batch_frames=4).cameras["front"].depth
        np.testing.assert_allclose(out[i].cameras["front"].depth, ref, rtol=1e-4, atol=1e-5)


def test_promptda_batched_equals_one_at_a_time(promptda_dir, monkeypatch):
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITL", str(promptda_dir))
    ep, _ = small_episode(frames=4, sensor_holes=True)
    annotator = make_depth_annotator("promptda")
    annotator.load()
    batched = annotate_episode_depth(ep, annotator, batch_frames=4).cameras["front"].depth
    single = annotate_episode_depth(ep, annotator, batch_frames=1).cameras["front"].depth
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


def test_promptda_needs_sensor_depth(promptda_dir, monkeypatch):
    monkeypatch.setenv("APPF_WEIGHTS_PROMPTDA_VITL", str(promptda_dir))
    ep, _ = small_episode(frames=1)
    annotator = make_depth_annotator("promptda")
    annotator.load()
    cam = ep.cameras["front"]
    with pytest.raises(ValueError, match="needs the sensor depth as its prompt"):
        annotator.annotate(DepthBatch(rgb=cam.rgb, K=cam.intrinsics, where="x"))


# ---------------------------------------------------------------------------------------------
# MoGe-2 (MoGe's own model class)


def _tiny_moge_config(dim: int = 32) -> dict:
    def head(out: int | None) -> dict:
        return {"dim_in": [dim] * 5, "dim_out": [None, None, None, None, out],
                "dim_res_blocks": [dim] * 5, "num_res_blocks": [0, 1, 0, 0, 0],
                "res_block_in_norm": "none", "res_block_hidden_norm": "none",
                "resamplers": ["bilinear"] * 4}

    neck = head(None)
    neck["dim_in"] = [dim + 2, 2, 2, 2, 2]  # UV channels are concatenated at every level
    return {"encoder": {"backbone": "dinov2_vits14", "intermediate_layers": [2, 5, 8, 11],
                        "dim_out": dim},
            "neck": neck, "points_head": head(3), "mask_head": head(1),
            "scale_head": {"dims": [384, 32, 1]}, "remap_output": "exp",
            "num_tokens_range": [48, 96]}


@pytest.fixture(scope="module")
def moge_model():
    pytest.importorskip("torch")
    v2 = pytest.importorskip("moge.model.v2")
    import torch

    torch.manual_seed(0)
    return v2.MoGeModel(**_tiny_moge_config()).eval()


@pytest.fixture(scope="module")
def moge_dir(moge_model, tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("moge-tiny")
    torch.save({"model_config": _tiny_moge_config(), "model": moge_model.state_dict()},
               d / "model.pt")
    return d


def test_moge_through_runinference_matches_moge_infer(moge_dir, moge_model, monkeypatch, tmp_path):
    import torch

    monkeypatch.setenv("APPF_WEIGHTS_MOGE_2_VITL_NORMAL", str(moge_dir))
    ep, _ = small_episode(frames=3)
    out = run_inference("moge2", [ep], batch_frames=2, tmp_path=tmp_path)[0]
    cam = out.cameras["front"]
    assert cam.depth.shape == (3, 72, 96)
    assert cam.depth_provenance.startswith("moge2@Ruicheng/moge-2-vitl-normal:local:")
    K = ep.cameras["front"].intrinsics
    np.testing.assert_array_equal(cam.intrinsics, K)
    # calibrated K: the same depth as MoGe's own infer() with the camera's horizontal FOV
    fov_x = float(np.degrees(2 * np.arctan(96 / (2 * K[0, 0]))))
    image = torch.from_numpy(ep.cameras["front"].rgb).permute(0, 3, 1, 2).float() / 255
    ref = moge_model.infer(image, num_tokens=96, fov_x=fov_x, use_fp16=False)["depth"].numpy()
    ref = np.where(np.isfinite(ref), ref, 0)
    np.testing.assert_allclose(cam.depth, ref, rtol=1e-4, atol=1e-5)


def test_moge_batched_equals_one_at_a_time(moge_dir, monkeypatch):
    monkeypatch.setenv("APPF_WEIGHTS_MOGE_2_VITL_NORMAL", str(moge_dir))
    ep, _ = small_episode(frames=4)
    annotator = make_depth_annotator("moge2")
    annotator.load()
    batched = annotate_episode_depth(ep, annotator, batch_frames=4).cameras["front"].depth
    single = annotate_episode_depth(ep, annotator, batch_frames=1).cameras["front"].depth
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_moge_estimates_pixel_K_for_uncalibrated_cameras():
    """MoGe's class with its forward replaced by an exact affine point map of a known camera
    (unknown z shift and scale): the backend recovers pixel K and metric depth."""
    pytest.importorskip("torch")
    v2 = pytest.importorskip("moge.model.v2")
    import torch
    from moge.utils.geometry_torch import normalized_view_plane_uv

    from appf.annotators.depth.moge import MoGe2Depth

    ep, full = small_episode(frames=2, calibrated=False)
    K_true = full.intrinsics
    gt = torch.from_numpy(np.asarray(full.depth[:2], dtype=np.float32))
    H, W = gt.shape[1:]
    F = focal_from_fx(float(K_true[0, 0]), H, W)
    offset0, scale0 = 0.15, 2.0  # MoGe's output: z / scale + offset (recovered shift = -offset)

    class ExactPointMap(v2.MoGeModel):
        def forward(self, image, num_tokens):
            uv = normalized_view_plane_uv(W, H, dtype=torch.float32)
            z = gt[: image.shape[0]]
            xy = uv[None] * z[..., None] / F
            points = torch.cat([xy, z[..., None]], -1) / scale0
            points[..., 2] += offset0
            return {"points": points, "mask": torch.ones_like(z),
                    "metric_scale": torch.full((image.shape[0],), scale0)}

    annotator = MoGe2Depth.from_model(ExactPointMap(**_tiny_moge_config()))
    result = annotate_episode_depth(ep, annotator, batch_frames=2)
    cam = result.cameras["front"]
    assert not cam.intrinsics_unknown
    np.testing.assert_allclose(cam.intrinsics, K_true, rtol=2e-3, atol=0.05)
    np.testing.assert_allclose(cam.depth, gt.numpy(), rtol=5e-3)


# ---------------------------------------------------------------------------------------------
# FoundationStereo (no package: a FAKE checkout with the real contract)

FAKE_FOUNDATION_STEREO = textwrap.dedent('''
    """FAKE FoundationStereo for appf's tests: the real class's constructor and forward contract,
    but the disparity comes from plain SAD block matching (no network, no weights to speak of)."""
    import torch
    import torch.nn.functional as F


    class FoundationStereo(torch.nn.Module):
        def __init__(self, args):
            super().__init__()
            self.max_disp = int(args.max_disp)
            self.register_buffer("box", torch.ones(1, 1, 5, 5) / 25.0)

        def forward(self, left, right, iters=32, test_mode=False):
            assert left.shape == right.shape and left.shape[1] == 3
            assert left.shape[-1] % 32 == 0 and left.shape[-2] % 32 == 0, left.shape
            assert float(left.max()) > 1.5, "inputs are 0..255"
            gl, gr = left.mean(1, keepdim=True), right.mean(1, keepdim=True)
            W = gl.shape[-1]
            costs = []
            for d in range(min(self.max_disp, W - 1)):
                shifted = F.pad(gr, (d, 0, 0, 0), mode="replicate")[..., :W]
                costs.append(F.conv2d((gl - shifted).abs(), self.box, padding=2))
            c = torch.cat(costs, 1)
            d0 = c.argmin(1, keepdim=True)
            lo = c.gather(1, (d0 - 1).clamp(min=0))
            mid = c.gather(1, d0)
            hi = c.gather(1, (d0 + 1).clamp(max=c.shape[1] - 1))
            den = (lo - 2 * mid + hi).clamp(min=1e-6)
            return d0.float() + ((lo - hi) / (2 * den)).clamp(-0.5, 0.5)
''')


@pytest.fixture(scope="session")
def fake_foundation_stereo(tmp_path_factory):
    pytest.importorskip("torch")
    import torch

    code = tmp_path_factory.mktemp("FoundationStereo")
    (code / "core").mkdir()
    (code / "core" / "__init__.py").write_text("")
    (code / "core" / "foundation_stereo.py").write_text(FAKE_FOUNDATION_STEREO)
    ckpt = tmp_path_factory.mktemp("fs-weights")
    (ckpt / "cfg.yaml").write_text("max_disp: 40\nvalid_iters: 4\nvit_size: vits\n")
    torch.save({"model": {"box": torch.ones(1, 1, 5, 5) / 25.0}, "epoch": 0},
               ckpt / "model_best_bp2.pth")
    return code, ckpt


def test_foundation_stereo_through_runinference(fake_foundation_stereo, monkeypatch, tmp_path):
    code, ckpt = fake_foundation_stereo
    monkeypatch.setenv("APPF_FOUNDATION_STEREO_CODE", str(code))
    monkeypatch.setenv("APPF_WEIGHTS_FOUNDATION_STEREO_VITL", str(ckpt))
    ep, _ = small_episode(frames=2, h=100, w=150)  # padded to 128 x 160 inside
    out = run_inference("foundation_stereo", [ep], batch_frames=2, tmp_path=tmp_path)[0]
    cam = out.cameras["front"]
    assert cam.depth.shape == (2, 100, 150)
    assert cam.depth_provenance == f"foundation_stereo@foundation-stereo-vitl:local:{ckpt}"
    for t in range(2):
        m = depth_metrics(cam.depth[t], ep.cameras["front"].depth[t])
        assert m["coverage"] > 0.8 and m["delta1"] > 0.9, m


def test_foundation_stereo_inference_scale_rescales_fx(fake_foundation_stereo):
    """At half resolution the disparities halve; depth stays right only because fx is taken
    at the inference resolution."""
    from appf.annotators.depth.foundation_stereo import FoundationStereoDepth

    code, ckpt = fake_foundation_stereo
    ep, _ = small_episode(frames=1, h=160, w=240)
    cam = ep.cameras["front"]
    batch = DepthBatch(rgb=cam.rgb, K=cam.intrinsics, rgb_right=cam.rgb_right,
                       baseline_m=cam.baseline_m, where="scale test")
    annotator = FoundationStereoDepth(code_dir=str(code), weights_path=str(ckpt), scale=0.5)
    annotator.load()
    result = annotator.annotate(batch)
    assert result.depth_m.shape == (1, 160, 240)
    m = depth_metrics(result.depth_m[0], cam.depth[0])
    assert m["delta1"] > 0.85 and m["abs_rel"] < 0.1, m


def test_foundation_stereo_missing_checkout_and_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("APPF_FOUNDATION_STEREO_CODE", raising=False)
    monkeypatch.delenv("APPF_WEIGHTS_FOUNDATION_STEREO_VITL", raising=False)
    annotator = make_depth_annotator("foundation_stereo")
    with pytest.raises(WeightsNotFoundError, match="not on the Hugging Face Hub.*"
                                                   "APPF_WEIGHTS_FOUNDATION_STEREO_VITL"):
        annotator.load()
    monkeypatch.setenv("APPF_WEIGHTS_FOUNDATION_STEREO_VITL", str(tmp_path))
    (tmp_path / "cfg.yaml").write_text("max_disp: 8\n")
    (tmp_path / "model_best_bp2.pth").write_bytes(b"")
    with pytest.raises(BackendUnavailableError, match="APPF_FOUNDATION_STEREO_CODE"):
        annotator.load()


HUB_CALLING_FOUNDATION_STEREO = textwrap.dedent('''
    """FAKE FoundationStereo whose constructor builds DINOv2 through torch.hub, as the real
    depth_anything/dpt.py does."""
    import torch


    class FoundationStereo(torch.nn.Module):
        def __init__(self, args):
            super().__init__()
            self.dino = torch.hub.load("facebookresearch/dinov2", "dinov2_vits14")
''')


@pytest.fixture
def isolated_core_package(monkeypatch):
    """Lets a test import its own `core` package and puts the session's back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {k: v for k, v in sys.modules.items() if k == "core" or k.startswith("core.")}
    for k in saved:
        del sys.modules[k]
    yield
    for k in [k for k in sys.modules if k == "core" or k.startswith("core.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def _hub_checkout(root: Path, with_dinov2: bool) -> tuple[Path, Path]:
    import torch

    code = root / "FoundationStereo"
    (code / "core").mkdir(parents=True)
    (code / "core" / "__init__.py").write_text("")
    (code / "core" / "foundation_stereo.py").write_text(HUB_CALLING_FOUNDATION_STEREO)
    if with_dinov2:
        (code / "dinov2").mkdir()
        (code / "dinov2" / "hubconf.py").write_text(
            "import torch\n"
            "def dinov2_vits14(pretrained=True):\n"
            "    assert not pretrained, 'would download'\n"
            "    return torch.nn.Linear(2, 2)\n")
    ckpt = root / "weights"
    ckpt.mkdir()
    (ckpt / "cfg.yaml").write_text("max_disp: 8\n")
    torch.save({"model": {"dino.weight": torch.zeros(2, 2), "dino.bias": torch.zeros(2)}},
               ckpt / "model_best_bp2.pth")
    return code, ckpt


@pytest.mark.parametrize("with_dinov2", [True, False])
def test_foundation_stereo_construction_never_uses_the_network_hub(
        with_dinov2, isolated_core_package, monkeypatch, tmp_path):
    """The dinov2 hub call goes to the checkout's own dinov2/ (pretrained=False); a checkout
    without it must fail with a clear error, not fall through to GitHub."""
    pytest.importorskip("torch")
    import torch

    from appf.annotators.depth.foundation_stereo_loader import load_foundation_stereo

    network: list[str] = []
    original = torch.hub.load

    def hub_load(repo, model, *args, **kwargs):
        if kwargs.get("source") != "local":
            network.append(repo)
            raise AssertionError(f"torch.hub.load({repo!r}) would download")
        return original(repo, model, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "load", hub_load)
    code, ckpt = _hub_checkout(tmp_path, with_dinov2)
    if with_dinov2:
        model, iters = load_foundation_stereo(code, ckpt)
        assert isinstance(model.dino, torch.nn.Linear) and iters == 32
    else:
        with pytest.raises(BackendUnavailableError, match="dinov2/ folder is missing"):
            load_foundation_stereo(code, ckpt)
    assert network == []
    assert torch.hub.load is hub_load  # the redirect is undone


# ---------------------------------------------------------------------------------------------
# optional packages absent


@pytest.mark.parametrize("backend, module, hint", [
    ("moge2", "moge.model.v2", "dlr-moge"),
    ("promptda", "transformers", "transformers"),
])
def test_missing_optional_package_fails_at_load(backend, module, hint, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    annotator = make_depth_annotator(backend)  # constructing is fine
    with pytest.raises(BackendUnavailableError, match=f"{backend!r} needs .*{hint}"):
        annotator.load()


def test_appf_imports_without_torch():
    """torch and transformers are optional: appf and its registry import without them."""
    code = ("import sys\n"
            "for m in ('torch', 'transformers', 'moge'): sys.modules[m] = None\n"
            "from appf.annotators.registry import make_depth_annotator\n"
            "import appf.launch.cli\n"
            "a = make_depth_annotator('promptda')\n"
            "try:\n    a.load()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BackendUnavailableError") and "'torch'" in out.stdout
