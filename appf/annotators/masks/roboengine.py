"""`roboengine`: RoboEngine's text-prompted segmentation (an EVF-SAM2 fine-tune) as per-frame
initial masks: "robot" through its robot model (HF michaelyuanqwq/roboengine-sam), each task
object noun through EVF-SAM2 multitask with a "[semantic] <noun>" prompt, as RoboEngine's own
object segmentation does.

RoboEngine has no installable package. The worker image carries
  - a clone of https://github.com/michaelyuancb/roboengine (read at a6e6f6d), installed into the
    worker's environment with its requirements (`pip install -e .`), named by
    $APPF_ROBOENGINE_CODE;
  - the two weight directories (EvfSam2Model.from_pretrained layout), fetched once with
    `appf models fetch roboengine-sam evf-sam2-multitask --revision <commit>` or copied by hand
    and named by $APPF_WEIGHTS_ROBOENGINE_SAM / $APPF_WEIGHTS_EVF_SAM2_MULTITASK.
Loading never downloads: the weights are passed as local directories and HF_HUB_OFFLINE is set
while RoboEngine's constructors run. Anything missing raises one RoboEngineUnavailableError
naming what to fetch and where.

The contract the masker relies on (TextPromptedSegmenter; the tests' stand-in implements it):
`segment(rgb (H, W, 3) uint8, prompt str) -> (H, W) bool`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from appf.annotators.weights import WeightsNotFoundError, resolve_weights
from appf.schemas import AppfError

CODE_ENV = "APPF_ROBOENGINE_CODE"
ROBOT_PROMPT = "robot"
ROBOT_WEIGHTS = "roboengine-sam"
OBJECT_WEIGHTS = "evf-sam2-multitask"

# Words of manipulation instructions that are not task objects (verbs, places, fillers).
_NOT_OBJECTS = frozenset("""
a an the this that these those it its them some any of to in into onto on off from with at by
for up down out over under and or then back left right top bottom front side near next inside
outside above below behind between middle center centre corner edge table surface robot arm
gripper hand please put place pick move push pull open close take lift grab grasp set turn rotate
slide stack drop insert remove wipe pour fold unfold flip press hang sweep fill empty get bring
place put make use try go other one two three it's you your
""".split())


class RoboEngineUnavailableError(AppfError):
    """RoboEngine's code or weights are not available on this worker; the message says what to
    fetch and where."""


class TextPromptedSegmenter(Protocol):
    def segment(self, rgb: np.ndarray, prompt: str) -> np.ndarray:
        """(H, W) bool mask of what `prompt` names in `rgb` (H, W, 3) uint8."""


def task_object_nouns(instruction: str, limit: int = 3) -> list[str]:
    """Task-object nouns of an instruction, in order, without repeats: of each run of words
    that are not known verbs, places or fillers, the last one (the head noun): "put the red cup
    in the bowl" -> ["cup", "bowl"]. A heuristic: RoboEngine itself uses spaCy noun phrases,
    and spaCy's English model is not installable from PyPI."""
    words = re.findall(r"[a-z]+", instruction.lower())
    heads, run = [], []
    for w in words + [""]:
        if w and w not in _NOT_OBJECTS and len(w) > 1:
            run.append(w)
            continue
        if run and run[-1] not in heads:
            heads.append(run[-1])
        run = []
    return heads[:limit]


def unavailable_reason() -> str | None:
    """Why RoboEngine cannot load here (None when its code and both weights are configured)."""
    problems = []
    code = os.environ.get(CODE_ENV)
    if not code:
        problems.append(f"{CODE_ENV} is not set (a clone of github.com/michaelyuancb/roboengine "
                        "installed with `pip install -e .` in the worker image)")
    elif not (Path(code) / "robo_engine" / "infer_engine.py").is_file():
        problems.append(f"{CODE_ENV}={code} has no robo_engine/infer_engine.py (not a RoboEngine "
                        "checkout)")
    for name in (ROBOT_WEIGHTS, OBJECT_WEIGHTS):
        try:
            resolve_weights(name, download=False)
        except WeightsNotFoundError as e:
            problems.append(str(e))
    return "; ".join(problems) or None


@contextlib.contextmanager
def _offline_import_path(code: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    sys.path.insert(0, code)
    try:
        yield
    finally:
        sys.path.remove(code)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RoboEngineSegmenter:
    """RoboEngine's robot and object segmentation from the configured checkout and weights."""

    def __init__(self, device: str = "cuda", image_size: int = 224):
        self.device, self.image_size = device, image_size
        self.robot: Any = None
        self.objects: Any = None
        self.revision = ""
        self.weights_id = f"{ROBOT_WEIGHTS}+{OBJECT_WEIGHTS}"

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def load(self) -> None:
        if self.robot is not None:
            return
        reason = unavailable_reason()
        if reason:
            raise RoboEngineUnavailableError(
                f"mask backend 'roboengine' cannot load: {reason}. Masks stay off for sources "
                "whose default is roboengine until this is fixed (see `appf models list`)")
        robot_w, object_w = resolve_weights(ROBOT_WEIGHTS), resolve_weights(OBJECT_WEIGHTS)
        with _offline_import_path(os.environ[CODE_ENV]):
            engine = importlib.import_module("robo_engine.infer_engine")
            self.robot = engine.RoboEngineRobotSegmentation(
                sam_versoin=str(robot_w.directory), sam_tokenizer_version=str(object_w.directory),
                image_size=self.image_size, device=self.device)
            self.objects = engine.RoboEngineObjectSegmentation(
                sam_versoin=str(object_w.directory), sam_tokenizer_version=str(object_w.directory),
                image_size=self.image_size, device=self.device,
                segmentation_cue=engine.SegmentationCue.prompts)
        self.revision = f"{robot_w.revision}+{object_w.revision}"

    def segment(self, rgb: np.ndarray, prompt: str) -> np.ndarray:
        if prompt == ROBOT_PROMPT:
            return np.asarray(self.robot.gen_image(rgb, prompt=ROBOT_PROMPT)) > 0
        # RoboEngineObjectSegmentation.gen_image parses nouns itself; go one level lower with
        # its model so that each object gets its own mask
        from robo_engine.robo_sam.infer_video import sam_video_infer  # noqa: PLC0415

        mask = sam_video_infer(self.image_size, [rgb], self.objects.obj_video_tokenizer,
                               self.objects.obj_video_sam, "[semantic] " + prompt)
        return np.asarray(mask)[0] > 0
