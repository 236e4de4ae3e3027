"""``appf export lerobot OUT_DIR --to DIR``: a run's committed episodes as a LeRobot v3.0 dataset
that ``lerobot.datasets.LeRobotDataset(repo_id, root=DIR)`` loads.

What goes where:
- from the run's shards (committed shards only, in shard then episode order): `observation.state`
  (per arm TCP xyz m, quat xyzw, gripper 0 open / 1 closed: the shard's `data/state`, names x, y, z,
  qx, qy, qz, qw, gripper), `action` (the shard's `data/action`, the source's action), and
  `observation.point_cloud` ((N, 6) float32: xyz base frame m + rgb [0, 1]; `--no-point-clouds`
  leaves it out);
- from the source (re-read with the run's manifest config; `--input` when the data moved): the
  frames of every camera as `observation.images.<camera>` videos, and the task (the episode's
  language instruction). An appf output holds no per-frame images (only point clouds and
  keyframe images in the SFT records), so the images come from where the run read them.
- depth: left out. The output holds point clouds, not depth maps, and lerobot 0.4.4 (the newest
  release for Python 3.11) has no depth feature (depth-map videos arrived later, PR #3644).
A shard episode whose source episode has a different number of steps is an error naming both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from appf.pipelines.sinks.lerobot_v3 import DEFAULT_CRF, LeRobotV3Writer, video_feature
from appf.pipelines.sources import make_source
from appf.schemas import AppfError, Episode, EpisodeRef, materialize
from appf.storage import Location, open_group, read_markers

STATE_NAMES = ("x", "y", "z", "qx", "qy", "qz", "qw", "gripper")


class ExportError(AppfError):
    """The run cannot be exported as asked; says why and what to do."""


def shard_episodes(out: Location, with_points: bool) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(episode id, per-step arrays) of every committed shard, in shard and episode order."""
    for _, commit in sorted(read_markers(out).items()):
        if commit.path is None:  # every episode of the shard failed
            continue
        g = open_group(out, commit.path)
        ends = np.asarray(g["meta/episode_ends"][:])
        ids = [str(i) for i in g["meta/episode_ids"][:]]
        keys = ["state", "action"] + (["point_cloud"] if with_points else [])
        data = {k: g[f"data/{k}"] for k in keys}
        for i, (start, stop) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
            yield ids[i], {k: np.asarray(a[int(start):int(stop)]) for k, a in data.items()}


def _source_refs(out: Location, overrides: dict[str, Any]) -> tuple[Any, dict[str, EpisodeRef]]:
    if not out.exists("manifest.json"):
        raise ExportError(f"{out.url_of('manifest.json')} missing: export reads a finished run (re-run "
                          "`appf reannotate` with the same arguments to finish it)")
    cfg = json.loads(out.read_text("manifest.json"))["config"]
    options = {**(cfg.get("source_options") or {}), **overrides}
    source = make_source(cfg["source"], options)
    return source, {r.episode_id: r for r in source.list_refs()}


def _features(ep: Episode, cameras: list[str], arrays: dict[str, np.ndarray], fps: int) -> dict[str, Any]:
    arms = arrays["state"].shape[1] // 8
    names = list(STATE_NAMES) if arms == 1 else [f"arm{a}.{n}" for a in range(arms) for n in STATE_NAMES]
    feats: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [arrays["state"].shape[1]], "names": names},
        "action": {"dtype": "float32", "shape": [arrays["action"].shape[1]], "names": None},
    }
    if "point_cloud" in arrays:
        feats["observation.point_cloud"] = {"dtype": "float32", "shape": list(arrays["point_cloud"].shape[1:]),
                                            "names": ["points", "xyzrgb"]}
    for c in cameras:
        feats[f"observation.images.{c}"] = video_feature(ep.cameras[c].height, ep.cameras[c].width, fps)
    return feats


def _episode_arrays(ep: Episode, cameras: list[str], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    T = len(arrays["state"])
    if ep.num_steps != T:
        raise ExportError(f"episode {ep.episode_id}: the shard has {T} frames, the source {ep.num_steps}; "
                          "was the source changed since the run? (--input points export at the source)")
    missing = [c for c in cameras if c not in ep.cameras]
    if missing:
        raise ExportError(f"episode {ep.episode_id}: cameras {missing} not in the source episode "
                          f"(has {sorted(ep.cameras)})")
    out = {"observation.state": arrays["state"].astype(np.float32),
           "action": arrays["action"].astype(np.float32)}
    if "point_cloud" in arrays:
        out["observation.point_cloud"] = arrays["point_cloud"].astype(np.float32)
    for c in cameras:
        out[f"observation.images.{c}"] = materialize(ep.cameras[c].rgb)
    return out


def _fps(ep: Episode) -> int:
    fps = int(round(ep.control_hz))
    if abs(ep.control_hz - fps) > 1e-6 or fps <= 0:
        raise ExportError(f"episode {ep.episode_id}: control rate {ep.control_hz} Hz is not a whole "
                          "number of frames per second, which LeRobot's `fps` needs")
    return fps


def export_lerobot(out: str | Path, to: str | Path, cameras: list[str] | None = None,
                   point_clouds: bool = True, source_overrides: dict[str, Any] | None = None,
                   crf: int = DEFAULT_CRF) -> dict[str, int]:
    """Write the run at `out` (local path or URL) as a LeRobot v3.0 dataset at local folder `to`;
    returns counts. `source_overrides` replace source options of the run's config (e.g. {"input":
    new path} when the data moved)."""
    out, to = Location(out), Path(to)
    source, refs = _source_refs(out, source_overrides or {})
    writer: LeRobotV3Writer | None = None
    for eid, arrays in shard_episodes(out, point_clouds):
        if eid not in refs:
            raise ExportError(f"episode {eid} of the run is not in the source any more (--input?)")
        ep = source.read(refs[eid])
        cams = list(cameras) if cameras else sorted(ep.cameras)
        if writer is None:
            fps = _fps(ep)
            writer = LeRobotV3Writer(to, fps, _features(ep, cams, arrays, fps), robot_type=ep.robot.name, crf=crf)
        elif _fps(ep) != writer.fps:
            raise ExportError(f"episode {eid}: {ep.control_hz} Hz differs from the first episode's {writer.fps}")
        frames = _episode_arrays(ep, cams, arrays)
        for key, spec in writer.features.items():
            if list(frames[key].shape[1:]) != list(spec["shape"]) and spec["dtype"] == "video":
                raise ExportError(f"episode {eid}: {key} is {frames[key].shape[1:]}, the first episode's "
                                  f"{spec['shape']}; LeRobot needs one size per camera")
        writer.add_episode(frames, ep.language_instruction)
    if writer is None:
        raise ExportError(f"{out} has no committed episode to export")
    writer.finalize()
    info = writer.info()
    return {"episodes": info["total_episodes"], "frames": info["total_frames"], "tasks": info["total_tasks"]}


def _run(args: argparse.Namespace) -> int:
    counts = export_lerobot(args.out_dir, args.to, cameras=args.cameras, point_clouds=not args.no_point_clouds,
                            source_overrides={"input": args.input} if args.input else None, crf=args.crf)
    print(f"wrote LeRobot v3.0 dataset {args.to}: {counts['episodes']} episodes, {counts['frames']} frames, "
          f"{counts['tasks']} tasks (load: LeRobotDataset('<any>/<name>', root='{args.to}'))")
    return 0


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("lerobot", help="committed episodes as a LeRobot v3.0 dataset (images re-read "
                                           "from the run's source)")
    p.add_argument("out_dir", help="the appf output directory of a finished run")
    p.add_argument("--to", required=True, help="new folder for the LeRobot dataset")
    p.add_argument("--cameras", nargs="+", help="cameras to write as videos (default: all of the source's)")
    p.add_argument("--input", help="the source's input path when it moved since the run")
    p.add_argument("--no-point-clouds", action="store_true", help="leave observation.point_cloud out")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF,
                   help=f"AV1 quality, 1 (best, largest) to 63 (default {DEFAULT_CRF}, LeRobot's)")
    p.set_defaults(func=_run)
