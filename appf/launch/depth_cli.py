"""`appf eval stereo|depth` (depth-quality harness) and `appf models list|fetch` (weights).

Hooked into `appf` by appf.launch.cli through `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from appf.schemas import ConfigError

# Middlebury 2014 Motorcycle as bundled by scikit-image (calib.txt of the quarter-size pair).
MOTORCYCLE = {"fx_px": 994.978, "cx_px": 311.193, "cy_px": 254.877, "doffs_px": 31.086,
              "baseline_m": 0.193001}

_STEREO_COLUMNS = ("coverage", "bad1", "bad2", "bad2_all", "epe_px", "abs_rel", "rmse_m", "delta1",
                   "seconds")
_DEPTH_COLUMNS = ("coverage", "abs_rel", "rmse_m", "delta1", "holes_coverage", "holes_abs_rel",
                  "holes_delta1", "sensor_coverage", "seconds")


def register(subparsers: Any) -> None:
    ev = subparsers.add_parser("eval", help="score a depth backend against ground truth")
    evsub = ev.add_subparsers(dest="eval_command", required=True)
    _register_eval_stereo(evsub)
    _register_eval_depth(evsub)

    from appf.launch.mask_eval_cli import register_eval

    register_eval(evsub)
    _register_models(subparsers)


def _register_eval_stereo(evsub: Any) -> None:
    """`appf eval stereo`: stereo backends against ground-truth disparity."""
    st = evsub.add_parser("stereo", help="stereo backends on pairs with ground-truth disparity")
    src = st.add_mutually_exclusive_group(required=True)
    src.add_argument("--left", help="left image (rectified)")
    src.add_argument("--synthetic", action="store_true", help="appf's synthetic stereo scenes")
    src.add_argument("--motorcycle", action="store_true",
                     help="Middlebury 2014 Motorcycle as bundled by scikit-image")
    st.add_argument("--right", help="right image (with --left)")
    st.add_argument("--gt-disparity", help="left-referenced disparity: PFM, PNG or NPY/NPZ "
                                           "(+inf or 0 = unknown)")
    st.add_argument("--gt-scale", type=float, help="PNG disparity = value * scale "
                                                   "(default 1/256 for 16-bit, 1 for 8-bit)")
    st.add_argument("--fx", type=float, help="rectified focal length, px (for depth metrics)")
    st.add_argument("--baseline-m", type=float, help="baseline, metres (for depth metrics)")
    st.add_argument("--doffs", type=float, default=0.0,
                    help="cx_right - cx_left, px (Middlebury doffs; default 0)")
    st.add_argument("--max-disp", type=float,
                    help="disparity search range, px (default: the largest ground-truth disparity)")
    st.add_argument("--backend", default="sgbm", help="depth backend (default sgbm)")
    st.add_argument("--no-baseline", action="store_true",
                    help="skip plain OpenCV SGBM, measured in the same run by default")
    _synthetic_options(st, frames=2)
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=_eval_stereo)


def _register_eval_depth(evsub: Any) -> None:
    """`appf eval depth`: RGB-D backends against ground-truth depth."""
    dp = evsub.add_parser("depth", help="RGB-D backends (sensor-depth completion) against "
                                        "ground-truth depth")
    dsrc = dp.add_mutually_exclusive_group(required=True)
    dsrc.add_argument("--rgb", help="RGB image")
    dsrc.add_argument("--synthetic", action="store_true",
                      help="appf's synthetic scenes with simulated sensor holes")
    dsrc.add_argument("--robosuite", metavar="DEMO.hdf5",
                      help="frames replayed from a robosuite / robomimic demo file (exact "
                           "simulator depth; simulated sensor holes for completion backends)")
    dp.add_argument("--demo", help="demo of --robosuite (default: the file's first)")
    dp.add_argument("--camera", default="agentview", help="camera of --robosuite (default agentview)")
    dp.add_argument("--sensor-depth", help="sensor depth (PNG mm / NPY / NPZ / PFM metres; 0 = hole)")
    dp.add_argument("--gt-depth", help="ground-truth depth, same formats")
    dp.add_argument("--depth-scale", type=float, default=0.001,
                    help="PNG depth value -> metres (default 0.001: millimetres)")
    for k in ("fx", "fy", "cx", "cy"):
        dp.add_argument(f"--{k}", type=float, help=f"intrinsics {k}, px (default: a 60 degree "
                                                   "field of view centred)")
    dp.add_argument("--backend", default="sensor_fill",
                    help="depth backend, or several separated by commas (default sensor_fill)")
    _synthetic_options(dp, frames=2)
    dp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    dp.set_defaults(func=_eval_depth)


def _register_models(subparsers: Any) -> None:
    """`appf models list|fetch`: learned-model weights."""
    mo = subparsers.add_parser("models", help="learned-model weights: list, pre-fetch")
    msub = mo.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="known weights, pinned revisions, whether cached here")
    ls.set_defaults(func=_models_list)
    fe = msub.add_parser("fetch", help="download weights into a cache (for worker images)")
    fe.add_argument("name", nargs="+", help="weights name(s) (see `appf models list`)")
    fe.add_argument("--cache-dir", help="cache directory (default $APPF_WEIGHTS_DIR or the "
                                        "huggingface_hub cache); set APPF_WEIGHTS_DIR to it on workers")
    fe.add_argument("--revision", help="commit to fetch instead of the pinned one")
    fe.set_defaults(func=_models_fetch)


def _synthetic_options(p: argparse.ArgumentParser, frames: int) -> None:
    p.add_argument("--frames", type=int, default=frames, help=f"synthetic frames (default {frames})")
    p.add_argument("--height", type=int, default=480, help="synthetic image height (default 480)")
    p.add_argument("--width", type=int, default=640, help="synthetic image width (default 640)")
    p.add_argument("--seed", type=int, default=0, help="synthetic episode seed (default 0)")


# ---------------------------------------------------------------------------------------------
# cases


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e}") from e


def _synthetic_frames(args: argparse.Namespace) -> tuple[Any, list[int]]:
    from appf.pipelines.sources.synthetic import SyntheticSource
    from appf.transforms.synthetic_scene import MIN_STEPS

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    steps = max(MIN_STEPS, args.frames)
    source = SyntheticSource(episodes=1, steps=steps, height=args.height, width=args.width,
                             seed=args.seed, stereo=True)
    episode = source.read(source.list_refs()[0])
    frames = sorted({int(round(i)) for i in np.linspace(0, steps - 1, args.frames)})
    return episode.cameras["front"], frames


def _stereo_cases(args: argparse.Namespace) -> list[Any]:
    from appf.annotators.depth.evaluate import StereoCase
    from appf.annotators.depth.units import depth_m_to_disparity
    from appf.transforms.stereo_io import decode_disparity, decode_image

    if args.synthetic:
        cam, frames = _synthetic_frames(args)
        fx, baseline = float(cam.intrinsics[0, 0]), float(cam.baseline_m)
        return [StereoCase(f"synthetic seed {args.seed} frame {t}", cam.rgb[t], cam.rgb_right[t],
                           depth_m_to_disparity(cam.depth[t], fx, baseline), fx, baseline)
                for t in frames]
    if args.motorcycle:
        try:
            from skimage.data import stereo_motorcycle
        except ImportError as e:
            raise ConfigError("--motorcycle needs scikit-image (pip install scikit-image)") from e
        left, right, disp = stereo_motorcycle()
        return [StereoCase("middlebury2014 motorcycle (scikit-image)", left, right, disp,
                           MOTORCYCLE["fx_px"], MOTORCYCLE["baseline_m"], MOTORCYCLE["doffs_px"])]
    if not (args.right and args.gt_disparity):
        raise ConfigError("eval stereo --left needs --right and --gt-disparity")
    gt = decode_disparity(_read(args.gt_disparity), Path(args.gt_disparity).suffix, args.gt_scale)
    left, right = decode_image(_read(args.left)), decode_image(_read(args.right))
    if left.shape != right.shape or left.shape[:2] != gt.shape:
        raise ConfigError(f"shapes differ: left {left.shape}, right {right.shape}, "
                          f"ground truth {gt.shape}")
    if (args.fx is None) != (args.baseline_m is None):
        raise ConfigError("give both --fx and --baseline-m (depth metrics) or neither")
    return [StereoCase(Path(args.left).name, left, right, gt, args.fx, args.baseline_m, args.doffs)]


def _robosuite_frames(args: argparse.Namespace) -> tuple[Any, list[int], str]:
    """One camera of `--frames` states spread evenly over a replayed demo."""
    from appf.pipelines.sources.robosuite import RobosuiteSource, list_demos

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    demo = args.demo or next(iter(list_demos(Path(args.robosuite))), None)
    if demo is None:
        raise ConfigError(f"{args.robosuite}: no demo_* group under data/")
    import h5py

    with h5py.File(args.robosuite, "r") as f:
        n_states = len(f[f"data/{demo}/states"])
    stride = max(1, n_states // args.frames)
    source = RobosuiteSource(input=args.robosuite, cameras=[args.camera], height=args.height,
                             width=args.width, demos=[demo], stride=stride,
                             stop=stride * args.frames)
    episode = source.read(source.list_refs()[0])
    return episode.cameras[args.camera], list(episode.metadata["state_indices"]), demo


def _rgbd_cases(args: argparse.Namespace) -> list[Any]:
    from appf.annotators.depth.evaluate import RgbdCase, simulate_sensor_holes
    from appf.transforms.stereo_io import decode_depth, decode_image

    if args.robosuite:
        cam, states, demo = _robosuite_frames(args)
        return [RgbdCase(f"{Path(args.robosuite).name} {demo} {cam.name} state {s}", cam.rgb[i],
                         simulate_sensor_holes(cam.depth[i], seed=args.seed * 1000 + i),
                         np.asarray(cam.depth[i]), np.asarray(cam.intrinsics, dtype=np.float64))
                for i, s in enumerate(states)]
    if args.synthetic:
        cam, frames = _synthetic_frames(args)
        return [RgbdCase(f"synthetic seed {args.seed} frame {t}", cam.rgb[t],
                         simulate_sensor_holes(cam.depth[t], seed=args.seed * 1000 + t),
                         np.asarray(cam.depth[t]), np.asarray(cam.intrinsics, dtype=np.float64))
                for t in frames]
    if not (args.sensor_depth and args.gt_depth):
        raise ConfigError("eval depth --rgb needs --sensor-depth and --gt-depth")
    rgb = decode_image(_read(args.rgb))
    sensor = decode_depth(_read(args.sensor_depth), Path(args.sensor_depth).suffix, args.depth_scale)
    gt = decode_depth(_read(args.gt_depth), Path(args.gt_depth).suffix, args.depth_scale)
    if not (rgb.shape[:2] == sensor.shape == gt.shape):
        raise ConfigError(f"shapes differ: rgb {rgb.shape}, sensor {sensor.shape}, gt {gt.shape}")
    h, w = gt.shape
    fx = args.fx or (w / 2) / math.tan(math.radians(30))
    K = np.array([[fx, 0, args.cx if args.cx is not None else (w - 1) / 2],
                  [0, args.fy or fx, args.cy if args.cy is not None else (h - 1) / 2], [0, 0, 1]])
    return [RgbdCase(Path(args.rgb).name, rgb, sensor, gt, K)]


# ---------------------------------------------------------------------------------------------
# commands


def _load_backend(name: str) -> Any:
    from appf.annotators.registry import make_depth_annotator

    annotator = make_depth_annotator(name)
    annotator.load()
    return annotator


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    return float(np.mean(values)) if values else float("nan")


def _fmt(value: Any, key: str) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in ("rmse_m", "epe_px"):
        return f"{value:.3f}"
    if key == "seconds":
        return f"{value:.2f}"
    return f"{100 * value:.2f}%"


def _print_table(results: dict[str, list[dict[str, Any]]], columns: tuple[str, ...],
                 names: list[str]) -> None:
    width = max(len(m) for m in results) + 2
    print(f"{'method':<{width}}" + "".join(f"{c:>16}" for c in columns) + "  case")
    for i, case in enumerate(names):
        for method, rows in results.items():
            print(f"{method:<{width}}" + "".join(f"{_fmt(rows[i].get(c), c):>16}" for c in columns)
                  + f"  {case}")
    if len(names) > 1:
        for method, rows in results.items():
            print(f"{method:<{width}}" + "".join(f"{_fmt(_mean(rows, c), c):>16}" for c in columns)
                  + "  mean")


def _report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]],
            names: list[str], columns: tuple[str, ...]) -> None:
    if args.json:
        summary = {m: {c: _mean(rows, c) for c in columns} for m, rows in results.items()}
        print(json.dumps({"backend": args.backend, "cases": names, "results": results,
                          "mean": summary}, indent=1, default=float))
    else:
        _print_table(results, columns, names)


def _eval_stereo(args: argparse.Namespace) -> int:
    from appf.annotators.depth.evaluate import evaluate_plain_sgbm, evaluate_stereo

    cases = _stereo_cases(args)
    annotator = _load_backend(args.backend)
    results: dict[str, list[dict[str, Any]]] = {args.backend: []}
    if not args.no_baseline:
        results["plain_sgbm"] = []
    for case in cases:
        results[args.backend].append(evaluate_stereo(annotator, case, args.max_disp))
        if not args.no_baseline:
            results["plain_sgbm"].append(evaluate_plain_sgbm(case, args.max_disp))
    _report(args, results, [c.name for c in cases], _STEREO_COLUMNS)
    return 0


def _eval_depth(args: argparse.Namespace) -> int:
    from appf.annotators.depth.evaluate import evaluate_rgbd

    cases = _rgbd_cases(args)
    results = {}
    for name in [b.strip() for b in args.backend.split(",") if b.strip()]:
        annotator = _load_backend(name)
        results[name] = [evaluate_rgbd(annotator, case) for case in cases]
    _report(args, results, [c.name for c in cases], _DEPTH_COLUMNS)
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from appf.annotators.weights import WEIGHTS, WeightsNotFoundError, resolve_weights

    for name, spec in sorted(WEIGHTS.items()):
        try:
            where = str(resolve_weights(name, download=False).directory)
        except WeightsNotFoundError:
            where = "not here"
        source = (f"{spec.repo_id}@{spec.revision or 'UNPINNED'}" if spec.repo_id
                  else "manual (not on the Hub)")
        print(f"{name:<24} {source}\n{'':<24} {spec.description}; licence: {spec.licence}\n"
              f"{'':<24} local: {where}; override: {spec.env_var}=<dir>")
    _print_code_checkouts()
    return 0


def _print_code_checkouts() -> None:
    """Source checkouts some backends need besides weights (no installable package)."""
    import os

    from appf.annotators.masks.roboengine import CODE_ENV, unavailable_reason

    code = os.environ.get(CODE_ENV)
    state = "ready" if not unavailable_reason() else ("weights or checkout missing" if code
                                                      else "not set")
    print(f"{'roboengine (code)':<24} github.com/michaelyuancb/roboengine checkout for the "
          f"roboengine mask backends\n{'':<24} {CODE_ENV}={code or '<unset>'}: {state}")


def _models_fetch(args: argparse.Namespace) -> int:
    from appf.annotators.weights import fetch_weights

    for name in args.name:
        resolved = fetch_weights(name, args.cache_dir, args.revision)
        print(f"{name}: {resolved.spec.weights_id}@{resolved.revision} -> {resolved.directory}",
              file=sys.stdout)
    return 0
