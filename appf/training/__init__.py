"""appf.training: shard readers, the APPF action expert, the VLM SFT data module, trainers.

Reads appf outputs only (imports appf.schemas and appf.transforms, never Beam or pipelines).

* ``ShardSet`` / ``ExpertWindowDataset``: windows over many point-cloud shards (Zarr 2 or 3).
* ``train_expert``: phase 1 (action pre-training) and phase 2 (point-cloud fine-tuning).
* ``ExpertPolicy.load(ckpt).predict(observation, guidance)``: denoised actions.
* ``appf.training.vlm``: SFT records -> chat samples, collator, ``train_vlm``.

Names are imported on first use, so deploying a policy does not import the trainer's stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataSpec": "appf.training.shards", "ShardSet": "appf.training.shards",
    "find_shards": "appf.training.shards", "ExpertConfig": "appf.training.config",
    "ExpertWindowDataset": "appf.training.dataset", "fit_normalizer": "appf.training.dataset",
    "Normalizer": "appf.training.normalizer", "ExpertPolicy": "appf.training.policy",
    "TrainingError": "appf.training.errors", "TrainResult": "appf.training.trainer",
    "train_expert": "appf.training.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'appf.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
