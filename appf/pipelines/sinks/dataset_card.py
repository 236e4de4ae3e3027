"""The dataset card (`<out>/README.md`): Hub YAML metadata (license of the sources, task
categories, size category, `configs` for the SFT and failures Parquet tables so that the Hub's
viewer and `datasets.load_dataset(repo_or_dir, config)` read them), then provenance, counts, the
layout and how to load the data with appf, DP3 / diffusion_policy and `datasets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from appf.storage import Location, layout

# Licenses of the source datasets (Hub license ids); appf's own synthetic data is the project's.
SOURCE_LICENSES = {
    "synthetic": "apache-2.0",
    "droid_raw": "cc-by-4.0", "droid_rlds": "cc-by-4.0",  # DROID: CC BY 4.0
    "bridge_raw": "cc-by-4.0", "bridge_rlds": "cc-by-4.0",  # BridgeData V2: CC BY 4.0
    "agibot": "cc-by-nc-sa-4.0",  # AgiBot World: CC BY-NC-SA 4.0
}
CONFIGS = [  # the Parquet tables, as Hub `configs` entries, with the count of their rows
    ({"config_name": "sft", "data_files": [{"split": "train", "path": "sft/*.parquet"}],
      "default": True}, "sft_records"),
    ({"config_name": "failures", "data_files": [{"split": "train", "path": "failures/*.parquet"}]},
     "failures"),
]
_SIZE_BOUNDS = [(1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (1e9, "100M<n<1B")]


def dataset_license(sources: list[str]) -> str:
    """One Hub license id for the sources: theirs when they agree, else 'other'."""
    found = {SOURCE_LICENSES.get(s, "other") for s in sources}
    return found.pop() if len(found) == 1 else "other"


def size_category(frames: int) -> str:
    """The Hub size category of a dataset of `frames` samples (point-cloud frames)."""
    return next((name for bound, name in _SIZE_BOUNDS if frames < bound), "n>1B")


def model_revisions(depth_backend: str, mask_backend: str) -> dict[str, str]:
    """Backend -> 'hub repo @ revision' (or what it is) of the models that annotated the data."""
    from appf.annotators.registry import make_depth_annotator, make_masker
    from appf.annotators.weights import weight_spec

    found = {}
    for role, name, make in (("depth", depth_backend, make_depth_annotator),
                             ("masks", mask_backend, make_masker)):
        try:
            weights = getattr(make(name), "weights", None)
        except Exception:  # noqa: BLE001 - an unknown/none backend has no model
            weights = None
        if weights is None:
            found[f"{role}: {name}"] = "no learned weights"
            continue
        spec = weight_spec(weights)
        where = spec.repo_id or "manual download"
        found[f"{role}: {name}"] = f"{weights} ({where} @ {spec.revision or 'unpinned'}; {spec.licence})"
    return found


def card_configs(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """One config per table that has rows: `datasets` cannot build a split of zero rows
    ('Instruction "train" corresponds to no data!'), so an empty table (a run without failures)
    is left out rather than listed as a config that fails to load."""
    return [config for config, rows in CONFIGS if counts[rows]]


def card_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    """The YAML header of the card."""
    return {
        "license": dataset_license(manifest["sources"]),
        "task_categories": ["robotics"],
        "tags": ["appf", "point-cloud", "robotics"],
        "size_categories": [size_category(manifest["counts"]["frames"])],
        "pretty_name": f"appf re-annotated {', '.join(manifest['sources'])}",
        "configs": card_configs(manifest["counts"]),
    }


def _table(rows: list[tuple[str, Any]]) -> str:
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def card_text(manifest: dict[str, Any]) -> str:
    c, prov = manifest["counts"], manifest["provenance"]
    header = yaml.safe_dump(card_metadata(manifest), sort_keys=False)
    models = model_revisions(prov["depth_backend"], prov["mask_backend"])
    provenance = [("sources", ", ".join(manifest["sources"])),
                  *((k, v) for k, v in models.items()),
                  ("appf code version", manifest["code_version"]),
                  ("schema version", manifest["schema_version"]),
                  ("config hash", f"`{manifest['config_hash']}`"),
                  ("crop box (base frame, m)", prov["crop_box"]),
                  ("points per frame", prov["n_points"]), ("mask mode", prov["mask_mode"])]
    action = manifest.get("action", {})
    counts = [("episodes", f"{c['episodes']} of {c['planned_episodes']} planned"),
              ("frames", c["frames"]), ("SFT keyframe records", c["sft_records"]),
              ("failed episodes", c["failures"]), ("shards", c["shards"]),
              (f"action (`data/action`, {action.get('dim', '?')} values per step)",
               str(action.get("space", "unknown")).replace("|", "/"))]
    hint = zarr2_hint(manifest["config"]["zarr_format"], "OUT_DIR")
    return (f"---\n{header}---\n\n# appf re-annotated dataset: {', '.join(manifest['sources'])}\n\n"
            f"## Provenance\n\n{_table(provenance)}\n\n## Counts\n\n{_table(counts)}\n\n"
            + (f"{hint}\n\n" if hint else "")
            + _LAYOUT.format(zarr_format=manifest["config"]["zarr_format"]) + _LOADING)


def zarr2_hint(zarr_format: int, out: str | Path) -> str:
    """One line telling a DP3 / diffusion_policy user (zarr-python 2) how to read a format-3 run."""
    if zarr_format != 3:
        return ""
    return (f"Zarr format 3 shards: DP3 and diffusion_policy (zarr-python 2) read format 2; run "
            f"`appf export dp3 {out} --to FILE.zarr` (one store) or re-run with --zarr-format 2.")


def write_dataset_card(out: str | Path | Location, manifest: dict[str, Any]) -> str:
    """Write `<out>/README.md`; returns its URL (or absolute local path)."""
    loc = out if isinstance(out, Location) else Location(out)
    loc.write_text(layout.CARD, card_text(manifest))
    return loc.url_of(layout.CARD)


_LAYOUT = """## Layout

- `pointclouds/shard-NNNNN.zarr`: diffusion_policy / DP3 replay-buffer layout (Zarr format
  {zarr_format}): `data/point_cloud` (T, N, 6) float32 xyz in the robot base frame (m) + rgb in [0, 1],
  `data/point_label` (T, N) uint8 (0 background, 1 robot, 2 task object), `data/point_count_real` (T,),
  `data/state` (T, 8 x arms), `data/action`, `data/ee_pose` (T, arms, 7; xyz + quat xyzw),
  `data/gripper` (T, arms; 0 open, 1 closed), `data/timestamp`, `data/keyframe`,
  `meta/episode_ends` (cumulative, int64), `meta/episode_ids`.
- `sft/records-NNNNN.parquet`: one row per gripper keyframe (image, instruction, K, anchor (u, v) and
  (u, v, d), waypoints and target pose in the camera frame, gripper command, chat `messages`).
- `failures/failures-NNNNN.parquet`: episodes that failed, with stage and reason.
- `_commits/shard-NNNNN.json`: a shard is complete exactly when its commit marker exists; the
  marker lists every object of the shard with its sha256. `manifest.json`: config, counts, shards.

"""

_LOADING = """## Loading

With appf (reads only committed shards; `@REVISION` pins a commit):

```bash
appf train expert --phase finetune --shards OWNER/NAME@REVISION --out runs/p2
appf train vlm --records OWNER/NAME@REVISION --model /models/my-vlm --out runs/vlm
```

With DP3 / diffusion_policy: download the repo (`hf download OWNER/NAME --repo-type dataset`) and
point the replay buffer at a shard: `ReplayBuffer.copy_from_path("pointclouds/shard-00000.zarr")`
(zarr-python 2 readers need an output written with `--zarr-format 2`).

With `datasets` (the SFT records and the failures table):

```python
from datasets import load_dataset
sft = load_dataset("OWNER/NAME", "sft", split="train")
failures = load_dataset("OWNER/NAME", "failures", split="train")
```
"""
