"""VLM fine-tuning data: SFT records -> chat samples -> batches for a real (tiny, random) LLaVA."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from appf.launch.cli import main
from appf.training.errors import TrainingError
from appf.training.vlm.collator import IGNORE_INDEX, VLMChatCollator
from appf.training.vlm.data import SFTChatDataset, chat_sample, find_record_files, sample_targets
from test_training_helpers import job_out  # noqa: F401

HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None

# Plain numbers in text: pixels to 0.1, metres / quaternion to 1e-4, gripper to 1e-3 (+ rounding).
TOL = {"uv": 0.05 + 1e-9, "d": 5e-4 + 1e-9, "m": 5e-5 + 1e-9, "g": 5e-4 + 1e-9}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _records(job_out) -> list[dict]:
    rows = []
    for f in find_record_files(job_out):
        rows += pq.read_table(f).to_pylist()
    assert rows, "the fixture job wrote no SFT record"
    return rows


def test_sample_format_round_trips_from_the_records(job_out):
    for rec in _records(job_out):
        sample = chat_sample(rec)
        roles = [m["role"] for m in sample["messages"]]
        assert roles == ["user", "assistant", "user", "assistant"]
        first = sample["messages"][0]["content"]
        assert first[0] == {"type": "image"} and first[1]["type"] == "text"
        assert rec["instruction"] in first[1]["text"]
        assert sample["images"][0].size == (rec["width"], rec["height"])
        got = sample_targets(sample)
        np.testing.assert_allclose(got["anchor_uv"], rec["anchor_uv"], atol=TOL["uv"])
        np.testing.assert_allclose(got["anchor_uvd"][:2], rec["anchor_uvd"][:2], atol=TOL["uv"])
        np.testing.assert_allclose(got["anchor_uvd"][2], rec["anchor_uvd"][2], atol=TOL["d"])
        np.testing.assert_allclose(got["waypoints"], rec["waypoints_cam"], atol=TOL["m"])
        np.testing.assert_allclose(got["target_pose"], rec["target_pose_cam"], atol=TOL["m"])
        np.testing.assert_allclose(got["gripper"], rec["gripper_command"], atol=TOL["g"])


def test_dataset_skips_out_of_view_anchors_and_counts_them(job_out):
    rows = _records(job_out)
    ds = SFTChatDataset(job_out)
    assert len(ds) + ds.skipped == len(rows)
    assert len(ds) == sum(r["anchor_in_view"] for r in rows)
    assert len(SFTChatDataset(job_out / "sft", include_out_of_view=True)) == len(rows)
    with pytest.raises(TrainingError, match="no SFT records"):
        SFTChatDataset(job_out / "pointclouds")


def test_record_without_messages_is_refused(job_out):
    rec = dict(_records(job_out)[0], messages=[])
    with pytest.raises(TrainingError, match="no messages"):
        chat_sample(rec)


def _tiny_vlm(job_out, folder: Path) -> Path:
    """A randomly initialised LLaVA (CLIP vision + Llama text) with a BPE tokenizer trained offline
    on the records' own texts, saved in the save_pretrained layout."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)
    from transformers.models.clip import CLIPImageProcessorPil

    texts = [c["text"] for r in _records(job_out) for m in r["messages"] for c in m["content"] if c["text"]]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts + [CHAT_TEMPLATE], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                               num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm(job_out, tmp_path_factory) -> Path:
    return _tiny_vlm(job_out, tmp_path_factory.mktemp("tiny_vlm"))


def test_collator_batches_train_a_real_vlm_on_the_answers_only(job_out, tiny_vlm):
    from appf.training.vlm.train import load_model

    model, processor = load_model(tiny_vlm)
    ds = SFTChatDataset(job_out)
    samples = [ds[i] for i in range(min(3, len(ds)))]
    batch = VLMChatCollator(processor)(samples)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["pixel_values"].shape[0] == len(samples)
    tok = processor.tokenizer
    for row, sample in enumerate(samples):
        answer_ids = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        answers = [c["text"] for m in sample["messages"] if m["role"] == "assistant" for c in m["content"]]
        # Answer tokens are exactly the two answers, each followed by the end-of-turn text.
        assert tok.decode(answer_ids) == "".join(a + "</s>\n" for a in answers)
        image_tokens = (batch["input_ids"][row] == model.config.image_token_id).sum()
        assert image_tokens == (32 // 8) ** 2           # patches of the one image (CLS dropped)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_model_folder_must_exist(tmp_path):
    from appf.training.vlm.train import load_model

    with pytest.raises(TrainingError, match="not a local model folder"):
        load_model(tmp_path)


@pytest.mark.skipif(not HAS_ACCELERATE, reason="transformers' Trainer needs the accelerate package")
def test_cli_fine_tunes_with_the_trainer(job_out, tiny_vlm, tmp_path):
    rc = main(["train", "vlm", "--records", str(job_out), "--model", str(tiny_vlm), "--out",
               str(tmp_path / "vlm"), "--steps", "2", "--batch-size", "2"])
    assert rc == 0
    assert (tmp_path / "vlm" / "final" / "config.json").is_file()



@pytest.mark.skipif(not HAS_ACCELERATE, reason="transformers' Trainer needs the accelerate package")
def test_resumed_vlm_run_logs_each_step_once(job_out, tiny_vlm, tmp_path):
    from appf.training.vlm.train import train_vlm

    for steps in (2, 3):        # the second call resumes from checkpoint-2
        train_vlm(job_out, tiny_vlm, tmp_path / "vlm", steps=steps, batch_size=2, logging_steps=1,
                  save_steps=2, report_to=())
    losses = [json.loads(x) for x in (tmp_path / "vlm" / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in losses if "loss" in m]
    assert steps == [1, 2, 3]


@pytest.mark.skipif(HAS_ACCELERATE, reason="accelerate is installed")
def test_cli_says_what_is_missing_without_accelerate(job_out, tiny_vlm, tmp_path, capsys):
    rc = main(["train", "vlm", "--records", str(job_out), "--model", str(tiny_vlm), "--out",
               str(tmp_path / "vlm")])
    assert rc == 2
    assert "accelerate" in capsys.readouterr().err
