"""`appf eval masks`: mask quality against ground-truth segmentation ids on synthetic or simulator
episodes -- a mask backend's labels (--backend), and/or what the tracking stage recovers from
ground truth with controlled corruption (--inject). Hooked in by appf.launch.depth_cli."""

from __future__ import annotations

import argparse
import json
from typing import Any

from appf.schemas import ConfigError

_COLUMNS = ("iou_mean", "iou_min", "boundary_f", "flicker", "flicker_gt", "corrupted_frames",
            "rejected", "corrupted_kept", "good_rejected")


def register_eval(evsub: Any) -> None:
    ms = evsub.add_parser("masks", help="mask backends and the tracking stage against "
                                        "ground-truth segmentation (synthetic / simulator episodes)")
    ms.add_argument("--source", default="synthetic",
                    help="a source with segmentation ids (default synthetic)")
    ms.add_argument("--source-option", action="append", default=[], metavar="KEY=VALUE",
                    help="source option (repeatable; VALUE read as YAML), e.g. "
                         "--source-option steps=80 --source-option height=240")
    ms.add_argument("--episodes", type=int, default=2, help="episodes to evaluate (default 2)")
    ms.add_argument("--camera", action="append", help="camera(s) (default: every camera)")
    ms.add_argument("--backend", help="a mask backend to score (e.g. ground_truth, kinematic)")
    ms.add_argument("--inject", help="corrupt ground truth and run the tracking stage on it: "
                                     "'dropout=0.2,flicker=0.1,shift=0.1,shift_px=15'")
    ms.add_argument("--seed", type=int, default=0, help="corruption seed (default 0)")
    ms.add_argument("--tolerance-px", type=int, default=2,
                    help="boundary F-score matching distance, pixels (default 2)")
    ms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ms.set_defaults(func=_eval_masks)


def _rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from appf.annotators.apply import mask_batch
    from appf.annotators.masks.evaluate import (
        evaluate_masker, evaluate_tracking, ground_truth_masks,
    )
    from appf.annotators.registry import make_masker
    from appf.launch.cli import _source_option_pairs
    from appf.pipelines.sources import make_source
    from appf.transforms.mask_corruption import Corruption

    if not args.backend and not args.inject:
        raise ConfigError("eval masks: give --backend NAME, --inject SPEC, or both")
    try:
        corruption = Corruption.parse(args.inject) if args.inject else None
    except ValueError as e:
        raise ConfigError(f"eval masks --inject: {e}") from e
    masker = make_masker(args.backend) if args.backend else None
    if masker is not None:
        masker.load()
    source = make_source(args.source, {"episodes": args.episodes,
                                       **_source_option_pairs(args.source_option)})
    rows = []
    for ref in source.list_refs()[:args.episodes]:
        ep = source.read(ref)
        for cam in args.camera or list(ep.cameras):
            batch = mask_batch(ep, cam)
            case = f"{ep.episode_id} {cam}"
            if masker is not None:
                for obj, m in evaluate_masker(masker, batch, args.tolerance_px).items():
                    rows.append({"case": case, "object": obj, "stage": args.backend, **m})
            if corruption is not None:
                for obj, gt in ground_truth_masks(batch).items():
                    for stage, m in evaluate_tracking(gt, corruption, args.seed,
                                                      tolerance_px=args.tolerance_px).items():
                        rows.append({"case": case, "object": obj, "stage": stage, **m})
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def _eval_masks(args: argparse.Namespace) -> int:
    rows = _rows(args)
    if args.json:
        print(json.dumps({"source": args.source, "backend": args.backend, "inject": args.inject,
                          "rows": rows}, indent=1, default=float))
        return 0
    print(f"{'stage':<16}{'object':<13}" + "".join(f"{c:>17}" for c in _COLUMNS) + "  case")
    for r in rows:
        print(f"{r['stage']:<16}{r['object']:<13}"
              + "".join(f"{_fmt(r.get(c)):>17}" for c in _COLUMNS) + f"  {r['case']}")
    return 0
