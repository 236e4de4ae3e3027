"""The real-data masker (initial masks -> tracking -> SAM 2) with a stand-in for RoboEngine, alone
and through the Beam job; missing RoboEngine code/weights: one clear message, masks off only for
the source default."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from appf.annotators import registry
from appf.annotators.apply import mask_batch
from appf.annotators.masks.prompted import PromptedVideoMasker
from appf.annotators.masks.roboengine import (
    RoboEngineSegmenter, RoboEngineUnavailableError, task_object_nouns,
)
from appf.annotators.masks.sam2 import Sam2VideoRefiner
from appf.annotators.protocols import LABEL_ROBOT, LABEL_TASK_OBJECT
from appf.pipelines.sources.synthetic import SyntheticSource
from appf.schemas import ConfigError
from appf.transforms.mask_corruption import Corruption, corrupt_masks
from appf.transforms.mask_metrics import mask_iou
from appf.transforms.synthetic_scene import CUBE_ID, ROBOT_ID
from mask_helpers import StandInRoboEngine, tiny_sam2_model
from pipeline_helpers import run_local, small_config

SOURCE = {"episodes": 1, "steps": 80, "height": 96, "width": 128, "seed": 0}  # smooth motion


def _episode(options=SOURCE):
    src = SyntheticSource(**{**options, "stereo": False})
    return src.read(src.list_refs()[0])


def _stand_in_for(episodes, corruption=Corruption(flicker=0.2, dropout=0.1)) -> StandInRoboEngine:
    """Ground truth of each episode's camera as RoboEngine's answers, 30% of frames corrupted."""
    stand_in = StandInRoboEngine()
    for ep in episodes:
        cam = ep.cameras["front"]
        seg, rgb = np.asarray(cam.segmentation), np.asarray(cam.rgb)
        for prompt, ids in (("robot", ROBOT_ID), ("cube", CUBE_ID)):
            noisy, _ = corrupt_masks(seg == ids, corruption, seed=ids)
            stand_in.add(rgb, prompt, noisy)
    return stand_in


def test_task_object_nouns():
    assert task_object_nouns("pick up the red cube and place it on the left") == ["cube"]
    assert task_object_nouns("Put the red cup in the bowl.") == ["cup", "bowl"]
    assert task_object_nouns("open the drawer, then put the marker inside") == ["drawer", "marker"]
    assert task_object_nouns("") == []


def test_masker_recovers_ground_truth_from_flickering_initial_masks():
    ep = _episode()
    masker = PromptedVideoMasker("roboengine", segmenter=_stand_in_for([ep]))
    batch = mask_batch(ep, "front")
    result = masker.masks(batch)
    seg = np.asarray(batch.segmentation)
    assert result.labels.shape == seg.shape and result.labels.dtype == np.uint8
    assert result.confidence.shape == (len(seg),)
    for label, ids in ((LABEL_ROBOT, ROBOT_ID), (LABEL_TASK_OBJECT, CUBE_ID)):
        ious = [mask_iou(result.labels[t] == label, seg[t] == ids) for t in range(len(seg))]
        assert np.mean(ious) >= 0.9, (label, np.mean(ious))


def test_masker_with_tiny_sam2_end_to_end():
    ep = _episode({**SOURCE, "steps": 16})
    stand_in = _stand_in_for([ep], Corruption())
    refiner = Sam2VideoRefiner.from_model(tiny_sam2_model(), window_frames=12, overlap_frames=4)
    masker = PromptedVideoMasker("roboengine+sam2", segmenter=stand_in, refiner=refiner)
    result = masker.masks(mask_batch(ep, "front"))
    assert result.labels.shape == (16, 96, 128)
    assert set(np.unique(result.labels)) <= {0, LABEL_ROBOT, LABEL_TASK_OBJECT}
    assert result.confidence.shape == (16,) and np.all(result.confidence <= 1)
    assert stand_in.calls == 2 * 16  # "robot" and "cube", every frame


def test_job_through_beam_with_stand_in(tmp_path, monkeypatch):
    """The registry builds the masker inside the worker, as for the real backend."""
    options = dict(SOURCE, episodes=2, steps=16)
    src = SyntheticSource(**options)
    episodes = [src.read(r) for r in src.list_refs()]
    monkeypatch.setitem(registry.MASK_BACKENDS, "roboengine", lambda: PromptedVideoMasker(
        "roboengine", segmenter=_stand_in_for(episodes)))
    cfg = small_config(tmp_path / "out", source_options=options, masks="roboengine",
                       mask_mode="foreground", crop=[[-1, -1, -0.5], [2, 1, 1.5]])
    summary = run_local(cfg)
    assert summary.failures == 0, summary.failures_by_stage
    root = zarr.open_group(str(tmp_path / "out/pointclouds/shard-00000.zarr"), mode="r")
    labels = root["data/point_label"][:]
    assert set(np.unique(labels)) <= {LABEL_ROBOT, LABEL_TASK_OBJECT}
    assert (labels == LABEL_ROBOT).any(axis=1).all()
    assert root.attrs["mask_backend"] == "roboengine"


def test_roboengine_load_names_what_to_fetch(monkeypatch):
    monkeypatch.delenv("APPF_ROBOENGINE_CODE", raising=False)
    with pytest.raises(RoboEngineUnavailableError) as e:
        RoboEngineSegmenter().load()
    msg = str(e.value)
    for needle in ("APPF_ROBOENGINE_CODE", "github.com/michaelyuancb/roboengine",
                   "michaelyuanqwq/roboengine-sam", "YxZhang/evf-sam2-multitask",
                   "APPF_WEIGHTS_ROBOENGINE_SAM", "appf models fetch"):
        assert needle in msg


def test_real_source_without_roboengine(tmp_path, monkeypatch):
    """droid_raw defaults to roboengine+sam2: with nothing configured the job runs with masks off
    and says how to enable them; asked for by name, or needed by mask_mode, it fails up front."""
    from tests.fixtures_droid import write_droid_raw

    monkeypatch.delenv("APPF_ROBOENGINE_CODE", raising=False)
    droid = write_droid_raw(tmp_path / "droid")
    base = dict(source="droid_raw", source_options={"input": str(droid.root), "cameras": ["ext1"]},
                n_points=128, progress_every_s=0, depth="sgbm")
    summary = run_local(small_config(tmp_path / "auto", **base))
    assert summary.episodes == 1 and summary.failures == 0
    mask_notes = [n for n in summary.notes if "mask" in n]
    assert len(mask_notes) == 1 and "\n" not in mask_notes[0]
    assert mask_notes[0].startswith("masks off") and "APPF_ROBOENGINE_CODE" in mask_notes[0]
    assert mask_notes[0] in summary.text()
    for override in ({"masks": "roboengine+sam2"}, {"mask_mode": "no_robot"}):
        with pytest.raises(ConfigError, match="APPF_ROBOENGINE_CODE"):
            run_local(small_config(tmp_path / "named", **{**base, **override}))


STAND_IN_CHECKOUT = '''
"""STAND-IN for robo_engine/infer_engine.py of a RoboEngine checkout (test double): the
constructor signatures and gen_image of the real module, recording what they were given."""
import os

CALLS = []


class SegmentationCue:
    points = "points"
    prompts = "prompts"


class RoboEngineRobotSegmentation:
    def __init__(self, sam_versoin, sam_tokenizer_version, image_size=224, device="cuda"):
        CALLS.append(("robot", sam_versoin, sam_tokenizer_version, device,
                      os.environ.get("HF_HUB_OFFLINE")))

    def gen_image(self, image_np, prompt="robot", preset_mask=None):
        import numpy as np
        mask = np.zeros(image_np.shape[:2], np.float32)
        mask[: image_np.shape[0] // 2] = 1.0
        return mask


class RoboEngineObjectSegmentation:
    def __init__(self, sam_versoin, sam_tokenizer_version, image_size=224, device="cuda",
                 segmentation_cue=SegmentationCue.points):
        CALLS.append(("objects", sam_versoin, sam_tokenizer_version, segmentation_cue))
        self.obj_video_tokenizer = "tokenizer"
        self.obj_video_sam = "sam"
'''

STAND_IN_INFER_VIDEO = '''
def sam_video_infer(image_size, frames, tokenizer, sam, prompt, anchor_frequency=8):
    import numpy as np
    out = np.zeros((len(frames), *frames[0].shape[:2]), np.float32)
    if prompt == "[semantic] cube":
        out[:, :, : frames[0].shape[1] // 4] = 1.0
    return out
'''


def test_roboengine_loader_uses_local_checkout_and_weights_offline(tmp_path, monkeypatch):
    """The loader against a stand-in checkout with RoboEngine's module layout and signatures:
    local weight directories go to the constructors, which run with HF_HUB_OFFLINE=1; robot and
    object prompts reach the right model."""
    import sys

    code = tmp_path / "roboengine"
    (code / "robo_engine" / "robo_sam").mkdir(parents=True)
    for pkg in (code / "robo_engine", code / "robo_engine" / "robo_sam"):
        (pkg / "__init__.py").write_text("")
    (code / "robo_engine" / "infer_engine.py").write_text(STAND_IN_CHECKOUT)
    (code / "robo_engine" / "robo_sam" / "infer_video.py").write_text(STAND_IN_INFER_VIDEO)
    dirs = {}
    for name in ("ROBOENGINE_SAM", "EVF_SAM2_MULTITASK"):
        dirs[name] = tmp_path / name.lower()
        dirs[name].mkdir()
        (dirs[name] / "config.json").write_text("{}")
        monkeypatch.setenv(f"APPF_WEIGHTS_{name}", str(dirs[name]))
    monkeypatch.setenv("APPF_ROBOENGINE_CODE", str(code))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for mod in [m for m in sys.modules if m.startswith("robo_engine")]:
        monkeypatch.delitem(sys.modules, mod)
    seg = RoboEngineSegmenter(device="cpu")
    assert seg.unavailable_reason() is None
    seg.load()
    engine = sys.modules["robo_engine.infer_engine"]
    robot_call, object_call = engine.CALLS
    assert robot_call == ("robot", str(dirs["ROBOENGINE_SAM"]), str(dirs["EVF_SAM2_MULTITASK"]),
                          "cpu", "1")
    assert object_call[1:] == (str(dirs["EVF_SAM2_MULTITASK"]), str(dirs["EVF_SAM2_MULTITASK"]),
                               "prompts")
    assert "HF_HUB_OFFLINE" not in __import__("os").environ and str(code) not in sys.path
    rgb = np.zeros((8, 12, 3), np.uint8)
    assert seg.segment(rgb, "robot")[:4].all() and not seg.segment(rgb, "robot")[4:].any()
    assert seg.segment(rgb, "cube")[:, :3].all() and not seg.segment(rgb, "bowl").any()
    assert seg.revision.startswith("local:")
