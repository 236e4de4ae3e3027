"""``appf train vlm``: supervised fine-tuning of a local vision-language model on SFT records with
transformers' Trainer (needs the accelerate package). The model and processor are read from a
local folder only (no download); the result is saved to ``RUN_DIR/final``; Trainer checkpoints go to
``RUN_DIR/checkpoint-N`` and a run folder that has them is resumed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import torch

from appf.training.errors import TrainingError
from appf.training.sources import VLM_FILES, DownloadFn, resolve_dataset
from appf.training.vlm.collator import VLMChatCollator
from appf.training.vlm.data import SFTChatDataset


def require_accelerate() -> None:
    if importlib.util.find_spec("accelerate") is None:
        raise TrainingError("`appf train vlm` runs transformers' Trainer, which needs the accelerate "
                            "package: pip install 'accelerate>=1.1.0'")


def load_model(model_path: str | Path):
    """Model and processor from a local folder (``save_pretrained`` layout)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise TrainingError(f"--model {path} is not a local model folder (no config.json); download the "
                            "model first (e.g. `hf download ORG/MODEL --local-dir DIR`) and pass DIR")
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    return model, processor


def train_vlm(records: str | Path, model_path: str | Path, out: str | Path, *, steps: int = 100,
              batch_size: int = 2, lr: float = 1e-5, seed: int = 0, max_length: int | None = None,
              save_steps: int = 500, logging_steps: int = 10, report_to: Sequence[str] = ("tensorboard",),
              include_out_of_view: bool = False, download: DownloadFn | None = None) -> Path:
    """Fine-tune; returns the folder of the final model (``out/final``)."""
    require_accelerate()
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    dataset = SFTChatDataset(resolve_dataset(records, VLM_FILES, download), include_out_of_view)
    model, processor = load_model(model_path)
    out = Path(out)
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=lr, seed=seed, data_seed=seed, logging_steps=logging_steps,
        save_steps=save_steps, save_total_limit=2, report_to=list(report_to),
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=VLMChatCollator(processor, max_length))
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    final = out / "final"
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(final))
        # log_history is the whole run's (a resumed run restores the earlier entries): rewrite.
        with (out / "metrics.jsonl").open("w") as f:
            for entry in trainer.state.log_history:
                f.write(json.dumps(entry) + "\n")
    return final
