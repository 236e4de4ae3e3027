"""The Parquet outputs as `datasets` and TRL take them, unchanged (issue 11 §3).

`datasets.load_dataset` reads every config of the dataset card (sft, failures) of a run with and
without failures. A table without rows has zero row groups, so Arrow's scanner does not fail with
"BatchSize must be greater than 0" on it (streaming, and globs that include it); the card lists only
tables with rows, since `datasets` cannot build a zero-row split. The SFT `image` column is the HF Image feature, so rows come
back with PIL images that TRL's vision-language collator turns into input_ids and pixel_values."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from appf.schemas import SFT_SCHEMA
from pipeline_helpers import SMALL_SOURCE, run_local, small_config

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    summary = run_local(small_config(out, source_options={**SMALL_SOURCE, "episodes": 2}))
    assert summary.failures == 0 and summary.sft_records > 0
    return out


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """6 episodes, 2 per shard; episodes 1, 2, 3 fail, so shard 1 holds no episode (empty SFT)."""
    out = tmp_path_factory.mktemp("faulty") / "out"
    faults = {1: "raise_read", 2: "empty", 3: "mismatched_lengths"}
    summary = run_local(small_config(out, source="faulty_source:FaultySource",
                                     source_options={**SMALL_SOURCE, "episodes": 6, "faults": faults}))
    assert summary.failures == 3 and summary.episodes == 3
    return out


def _load(out, config: str):
    return datasets.load_dataset(str(out), config, split="train", cache_dir=str(out.parent / "hf-cache"))


def test_empty_tables_have_zero_row_groups(clean_run, faulty_run):
    empty = [clean_run / "failures/failures-00000.parquet", faulty_run / "sft/records-00001.parquet"]
    for path in empty:
        meta = pq.ParquetFile(path).metadata
        assert (meta.num_rows, meta.num_row_groups) == (0, 0), path
    assert pq.read_schema(empty[1]).equals(pq.read_schema(faulty_run / "sft/records-00000.parquet"))


def test_load_dataset_reads_every_config_without_failures(clean_run):
    assert datasets.get_dataset_config_names(str(clean_run)) == ["sft"]  # no failures: no config
    for config in datasets.get_dataset_config_names(str(clean_run)):
        assert len(_load(clean_run, config)) == pq.read_table(clean_run / config).num_rows > 0
    # the zero-row failures table itself streams (a one-empty-row-group file raised ArrowInvalid)
    empty = datasets.load_dataset("parquet", data_files=str(clean_run / "failures/*.parquet"),
                                  split="train", streaming=True)
    assert list(empty) == [] and "episode_id" in empty.features


def test_load_dataset_reads_every_config_with_failures(faulty_run):
    assert datasets.get_dataset_config_names(str(faulty_run)) == ["sft", "failures"]
    failures = _load(faulty_run, "failures")
    assert sorted(failures["episode_id"]) == [f"synthetic-{i:06d}" for i in (1, 2, 3)]
    assert set(failures["stage"]) == {"read"}
    sft = _load(faulty_run, "sft")  # includes the zero-row file of the all-failed shard
    assert len(sft) > 0 and set(sft["episode_id"]) == {f"synthetic-{i:06d}" for i in (0, 4, 5)}


def test_image_column_is_the_hf_image_feature(clean_run):
    sft = _load(clean_run, "sft")
    assert isinstance(sft.features["image"], datasets.Image)
    assert datasets.Features.from_arrow_schema(SFT_SCHEMA)["image"] == datasets.Image()
    raw = pq.read_table(clean_run / "sft").to_pylist()
    for row, rec in zip(sft, raw):
        assert isinstance(row["image"], Image.Image) and row["image"].size == (rec["width"], rec["height"])
        want = np.asarray(Image.open(io.BytesIO(rec["image"]["bytes"])).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(row["image"].convert("RGB")), want)
        assert row["messages"][0]["content"][0]["type"] == "image"


def test_trl_collator_turns_two_rows_into_model_inputs(clean_run, tmp_path):
    pytest.importorskip("trl")
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling
    from transformers import AutoProcessor

    from test_vlm import _tiny_vlm

    processor = AutoProcessor.from_pretrained(_tiny_vlm(clean_run, tmp_path / "vlm"))
    rows = [dict(r) for r in _load(clean_run, "sft").select_columns(["image", "messages"]).select(range(2))]
    batch = DataCollatorForVisionLanguageModeling(processor)(rows)  # rows as load_dataset yields them
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 2 and batch["labels"].shape == batch["input_ids"].shape
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ((batch["input_ids"] == image_token).sum(dim=1) == (32 // 8) ** 2).all()
    text = processor.tokenizer.decode(batch["input_ids"][0][batch["attention_mask"][0] == 1])
    assert "Where should the gripper interact next?" in text
