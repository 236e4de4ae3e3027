"""VLM fine-tuning data: SFT records -> chat samples -> batches for transformers' VLMs.

Import ``appf.training.vlm.train`` for the trainer (it imports transformers)."""

from appf.training.vlm.data import (SFTChatDataset, chat_sample, find_record_files, parse_anchor_answer,
                                    parse_plan_answer, parse_plan_prompt, sample_targets)

__all__ = ["SFTChatDataset", "chat_sample", "find_record_files", "parse_anchor_answer",
           "parse_plan_answer", "parse_plan_prompt", "sample_targets"]
