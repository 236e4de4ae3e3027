"""The `appf` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from appf.schemas import AppfError, ConfigError


def _runner_opts(pairs: list[str] | None) -> dict[str, str]:
    """`--runner-opt KEY=VALUE` pairs as a dict."""
    bad = [p for p in pairs or [] if "=" not in p or not p.split("=", 1)[0]]
    if bad:
        raise ConfigError(f"--runner-opt takes KEY=VALUE, got {bad}")
    return dict(p.split("=", 1) for p in pairs or [])


def job_config_from_args(args: argparse.Namespace):
    """The job config from `--config` (if any) and the command-line flags present in `args`."""
    from appf.pipelines.config import JobConfig

    flags = ("source", "out", "runner", "workers", "dask_address", "zarr_format", "depth", "masks",
             "n_points", "mask_mode", "store_masks", "episodes_per_shard", "image")
    overrides = {k: getattr(args, k, None) for k in flags}
    config = getattr(args, "config", None)
    cfg = (JobConfig.from_file(config, **overrides) if config
           else JobConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    source_options = dict(cfg.source_options)
    for key in ("episodes", "input", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            source_options[key] = value
    source_options.update(_source_option_pairs(getattr(args, "source_option", None) or []))
    cfg.source_options = source_options
    cfg.runner_options = {**cfg.runner_options,
                          **_runner_opts(getattr(args, "runner_opt", None))}
    return cfg


def _reannotate(args: argparse.Namespace) -> int:
    from appf.launch.runner_profiles import submission
    from appf.launch.runners import pipeline_options

    cfg = job_config_from_args(args)
    sub = submission(cfg)  # validates the runner profile before anything runs
    if args.dry_run:
        print(sub.text(cfg))
        return 0
    from appf.pipelines.job import run_job

    source_options = cfg.source_options
    print(f"[appf] reannotate: source {cfg.source} {source_options} -> {cfg.out} "
          f"(runner {cfg.runner}, {cfg.workers} worker(s), zarr format {cfg.zarr_format})",
          file=sys.stderr)
    with pipeline_options(cfg) as options:
        summary = run_job(cfg, options, break_lock=args.break_lock)
    print(summary.text())
    return 0


def _source_option_pairs(pairs: list[str]) -> dict:
    """`KEY=VALUE` pairs, each VALUE read as YAML (`cameras=[agentview]`, `stop=40`)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--source-option wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--source-option {key}: cannot read {value!r} as YAML: {e}") from e
    return out


def _inspect(args: argparse.Namespace) -> int:
    from appf.launch.inspect_output import summary_text, write_png

    print(summary_text(args.dir))
    if args.png:
        path = write_png(args.dir, args.png, args.episode, args.keyframe)
        print(f"wrote {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from appf.launch.validate_output import validate_output

    problems = validate_output(args.dir, deep=args.deep)
    if problems:
        print(f"INVALID: {args.dir} ({len(problems)} problem(s))", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"valid: {args.dir}")
    return 0


def _sources(args: argparse.Namespace) -> int:
    from appf.pipelines.sources import SOURCES, source_class

    print(f"{'source':<12}{'stereo':>7}{'sensor depth':>13}{'gt depth':>9}{'calibration':>12}"
          f"{'arms':>6}  default depth / masks")
    for name in sorted(SOURCES):
        i = source_class(name).info
        yn = lambda b: "yes" if b else "no"  # noqa: E731
        print(f"{name:<12}{yn(i.stereo):>7}{yn(i.sensor_depth):>13}{yn(i.ground_truth_depth):>9}"
              f"{yn(i.calibration):>12}{i.arms:>6}  {i.default_depth} / {i.default_masks}")
    return 0


# Modules that add their own subcommands through `register(subparsers)`.
_PLUGIN_COMMANDS: tuple[str, ...] = ("appf.launch.depth_cli", "appf.launch.train_cli",
                                     "appf.launch.export_cli", "appf.launch.jobs_cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show Beam's own logs")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_reannotate(sub)
    _add_output_commands(sub)
    _register_plugins(sub)
    return parser


def _add_reannotate(sub: Any) -> None:
    r = sub.add_parser("reannotate", help="run the re-annotation job: shards, SFT records, failures")
    r.add_argument("--source", help="dataset source (see `appf sources`); default synthetic")
    r.add_argument("--input", help="input path of the dataset (sources that read files)")
    r.add_argument("--episodes", type=int, help="number of episodes (synthetic source)")
    r.add_argument("--seed", type=int, help="seed (synthetic source)")
    r.add_argument("--source-option", action="append", metavar="KEY=VALUE",
                   help="a source option (VALUE read as YAML), repeatable: e.g. "
                        "--source-option cameras=[agentview] --source-option height=256")
    r.add_argument("--out", help="output directory (default ./out)")
    r.add_argument("--config", help="YAML/JSON job config; command-line flags win")
    r.add_argument("--runner", choices=["local", "dask", "dataflow", "flink", "spark"],
                   help="runner profile (default local); options: --runner-opt")
    r.add_argument("--runner-opt", action="append", metavar="KEY=VALUE",
                   help="a runner profile option, repeatable (e.g. project=..., flink_master=...)")
    r.add_argument("--image", help="worker image (dataflow, flink, spark profiles)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the submission (pipeline options, image, resources) and exit")
    r.add_argument("--workers", type=int, help="worker processes (default 1)")
    r.add_argument("--dask-address", help="dask scheduler address (default: a LocalCluster)")
    r.add_argument("--zarr-format", type=int, choices=[2, 3],
                   help="3 (default, sharded) or 2 (zarr-python 2 readers: DP3, diffusion_policy)")
    r.add_argument("--depth", help="depth backend (default: the source's)")
    r.add_argument("--masks", help="mask backend (default: the source's; 'none' to skip)")
    r.add_argument("--mask-mode", choices=["none", "no_robot", "task_objects", "foreground"],
                   help="restrict point clouds by mask (default none)")
    r.add_argument("--store-masks", action="store_true", default=None,
                   help="also write each camera's mask labels into the shards (masks/<camera>)")
    r.add_argument("--n-points", type=int, help="points per frame (default 1024)")
    r.add_argument("--episodes-per-shard", type=int, help="default 16")
    r.add_argument("--break-lock", action="store_true",
                   help="take over an object-store lease whose job stopped heart-beating (a "
                        "local lock needs none: it dies with its process)")
    r.set_defaults(func=_reannotate)


def _add_output_commands(sub: Any) -> None:
    """inspect, validate, sources."""
    i = sub.add_parser("inspect", help="summarise an output directory; --png draws a frame")
    i.add_argument("dir")
    i.add_argument("--png", help="write a picture of a point cloud, its image and an SFT keyframe")
    i.add_argument("--episode", help="episode id to draw (default: the first with SFT records)")
    i.add_argument("--keyframe", type=int, default=0, help="keyframe index to draw")
    i.set_defaults(func=_inspect)

    v = sub.add_parser("validate", help="check manifest, commit markers, objects, tables and shards "
                       "of an output (local directory or URL such as s3://bucket/run)")
    v.add_argument("dir", help="output directory or URL")
    v.add_argument("--deep", action="store_true",
                   help="re-read every object (sha256) and decode every chunk (slow); default: "
                        "sizes, checksums of tables and metadata, low-dimensional arrays")
    v.set_defaults(func=_validate)

    s = sub.add_parser("sources", help="list the sources and what each provides")
    s.set_defaults(func=_sources)


def _register_plugins(sub: Any) -> None:
    for module in _PLUGIN_COMMANDS:
        try:
            plugin = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        plugin.register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Beam logs a worker's exception before re-raising it; appf reports it once, as one line
        # for I/O errors (or with its traceback for anything else).
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    try:
        return args.func(args)
    except AppfError as e:
        print(f"appf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
