"""The dataset card (`<out>/README.md`) with a Hub `configs:` block for the Parquet tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appf.storage import Location, layout

_CARD = """---
license: other
task_categories:
- robotics
tags:
- appf
- point-cloud
- robotics
{configs}---

# appf re-annotated dataset: {sources}

Written by appf {code_version} (schema {schema_version}), config hash `{config_hash}`.

| | |
|---|---|
| episodes | {episodes} of {planned} planned |
| frames | {frames} |
| SFT keyframe records | {sft_records} |
| failed episodes | {failures} |
| shards | {shards} |
| depth backend | {depth_backend} |
| mask backend | {mask_backend} |
| crop box (base frame, m) | {crop_box} |
| points per frame | {n_points} |
| action (`data/action`, {action_dim} values per step) | {action_space} |
{zarr2_hint}
## Layout

- `pointclouds/shard-NNNNN.zarr`: diffusion_policy / DP3 replay-buffer layout (Zarr format
  {zarr_format}): `data/point_cloud` (T, N, 6) float32 xyz in the robot base frame (m) + rgb in [0, 1],
  `data/point_label` (T, N) uint8 (0 background, 1 robot, 2 task object), `data/point_count_real` (T,),
  `data/state` (T, 8 x arms), `data/action`, `data/ee_pose` (T, arms, 7; xyz + quat xyzw),
  `data/gripper` (T, arms; 0 open, 1 closed), `data/timestamp`, `data/keyframe`,
  `meta/episode_ends` (cumulative, int64), `meta/episode_ids`.
- `sft/records-NNNNN.parquet`: one row per gripper keyframe (image, instruction, K, anchor (u, v) and
  (u, v, d), waypoints and target pose in the camera frame, gripper command, chat `messages`).
- `failures/failures-NNNNN.parquet`: episodes that failed, with stage and reason.
- `manifest.json`: config, counts, shard checksums.
"""


def zarr2_hint(zarr_format: int, out: str | Path) -> str:
    """One line telling a DP3 / diffusion_policy user (zarr-python 2) how to read a format-3 run."""
    if zarr_format != 3:
        return ""
    return (f"Zarr format 3 shards: DP3 and diffusion_policy (zarr-python 2) read format 2; run "
            f"`appf export dp3 {out} --to FILE.zarr` (one store) or re-run with --zarr-format 2.")


def configs_block(counts: dict[str, Any]) -> str:
    """The Hub `configs:` block: one config per table that has rows. `datasets` cannot build a
    split of zero rows ('Instruction "train" corresponds to no data!'), so an empty table (a run
    without failures) is left out rather than listed as a config that fails to load."""
    tables = [("sft", "sft/*.parquet", counts["sft_records"]),
              ("failures", "failures/*.parquet", counts["failures"])]
    lines = [f'- config_name: {name}\n  data_files: "{files}"\n' for name, files, rows in tables if rows]
    return "configs:\n" + "".join(lines) if lines else ""


def write_dataset_card(out: str | Path | Location, manifest: dict[str, Any]) -> str:
    """Write `<out>/README.md`; returns its URL (or absolute local path)."""
    c, prov = manifest["counts"], manifest["provenance"]
    text = _CARD.format(
        configs=configs_block(c),
        sources=", ".join(manifest["sources"]), code_version=manifest["code_version"],
        schema_version=manifest["schema_version"], config_hash=manifest["config_hash"],
        episodes=c["episodes"], planned=c["planned_episodes"], frames=c["frames"],
        sft_records=c["sft_records"], failures=c["failures"], shards=c["shards"],
        depth_backend=prov["depth_backend"], mask_backend=prov["mask_backend"],
        crop_box=prov["crop_box"], n_points=prov["n_points"],
        zarr_format=manifest["config"]["zarr_format"],
        action_dim=manifest.get("action", {}).get("dim", "?"),
        action_space=manifest.get("action", {}).get("space", "unknown").replace("|", "/"),
        zarr2_hint=("\n" + zarr2_hint(manifest["config"]["zarr_format"], "OUT_DIR") + "\n"
                    if manifest["config"]["zarr_format"] == 3 else ""))
    loc = out if isinstance(out, Location) else Location(out)
    loc.write_text(layout.CARD, text)
    return loc.url_of(layout.CARD)
