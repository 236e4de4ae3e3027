"""Batches of chat samples for transformers' vision-language models, loss on the answers only.

The model's own chat template renders each sample. The rendered text is cut at the assistant
turns (found by rendering the conversation up to each turn, so any prefix-stable template works);
the first part, which holds the image, goes through the model's processor (image tokens
expanded, pixel values made), the rest through its tokenizer. Labels are the token ids inside
assistant turns (answer and end-of-turn) and -100 elsewhere; batches are right-padded.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from appf.training.errors import TrainingError

IGNORE_INDEX = -100
_SEQUENCE_KEYS = ("input_ids", "attention_mask")


class VLMChatCollator:
    def __init__(self, processor: Any, max_length: int | None = None):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if self.tokenizer.pad_token_id is None:
            raise TrainingError("the model's tokenizer has no pad token; set tokenizer.pad_token "
                                "(e.g. to its eos token) and save the processor again")
        self.max_length = max_length
        self.image_token = getattr(processor, "image_token", None)

    def _render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered conversation as (text, is_answer) pieces, in order."""
        full = self._render(messages)
        pieces, cursor = [], 0
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before, upto = self._render(messages[:i], True), self._render(messages[: i + 1])
            if not (full.startswith(upto) and upto.startswith(before) and len(before) >= cursor):
                raise TrainingError("the model's chat template is not prefix-stable (rendering the first "
                                    f"{i + 1} turns is not a prefix of the whole conversation); "
                                    "use a template that appends turns unchanged")
            pieces += [(full[cursor:len(before)], False), (full[len(before):len(upto)], True)]
            cursor = len(upto)
        pieces.append((full[cursor:], False))
        return [(t, a) for t, a in pieces if t]

    def encode(self, sample: dict[str, Any]) -> tuple[list[int], list[int], dict[str, torch.Tensor]]:
        """Token ids, labels and image tensors of one sample."""
        pieces = self.segments(sample["messages"])
        first_text, first_is_answer = pieces[0]
        if first_is_answer:
            raise TrainingError("a chat sample must start with a user turn (holding the image)")
        first = self.processor(text=[first_text], images=[sample["images"]], return_tensors="pt")
        ids = first["input_ids"][0].tolist()
        labels = [IGNORE_INDEX] * len(ids)
        extra = {k: v for k, v in first.items() if k not in _SEQUENCE_KEYS}
        for key, value in extra.items():
            if torch.is_tensor(value) and value.ndim >= 2 and value.shape[:2] == first["input_ids"].shape:
                raise TrainingError(f"the processor returns a per-token input {key!r}; this collator "
                                    "supports processors whose only per-token inputs are input_ids and "
                                    "attention_mask (LLaVA- and Qwen2-VL-style)")
        for text, is_answer in pieces[1:]:
            if self.image_token and self.image_token in text:
                raise TrainingError("only the first user turn may hold an image")
            t = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += t
            labels += t if is_answer else [IGNORE_INDEX] * len(t)
        if self.max_length is not None and len(ids) > self.max_length:
            if len(first["input_ids"][0]) > self.max_length:
                raise TrainingError(f"max_length {self.max_length} cuts into the image and prompt "
                                    f"({len(first['input_ids'][0])} tokens); raise max_length")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        return ids, labels, extra

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(s) for s in samples]
        length = max(len(ids) for ids, _, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), length), pad, dtype=torch.long)
        labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(samples), length), dtype=torch.long)
        for row, (ids, lab, _) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            attention[row, : len(ids)] = 1
        batch: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention,
                                          "labels": labels}
        for key in encoded[0][2]:
            batch[key] = torch.cat([extra[key] for _, _, extra in encoded], dim=0)
        return batch
