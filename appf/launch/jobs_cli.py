"""`appf plan CONFIG` and `appf status OUT`: a job before it runs, and while or after it runs."""

from __future__ import annotations

import argparse


def _plan(args: argparse.Namespace) -> int:
    from appf.launch.cli import job_config_from_args
    from appf.launch.job_plan import plan_job, plan_text

    cfg = job_config_from_args(args)
    print(plan_text(cfg, plan_job(cfg, sample=args.sample)))
    return 0


def _status(args: argparse.Namespace) -> int:
    from appf.launch.job_status import job_status, status_text

    print(status_text(job_status(args.out), args.out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print what a job would do (episodes, shards, frames, "
                                    "CPU/GPU hours) without running it")
    p.add_argument("config", nargs="?", help="YAML/JSON job config (flags below win)")
    p.add_argument("--source", help="dataset source (default synthetic)")
    p.add_argument("--input", help="input path of the dataset")
    p.add_argument("--episodes", type=int, help="number of episodes (synthetic source)")
    p.add_argument("--seed", type=int, help="seed (synthetic source)")
    p.add_argument("--out", help="output the job would write (its plan and commits are read)")
    p.add_argument("--depth", help="depth backend (default: the source's)")
    p.add_argument("--episodes-per-shard", type=int, help="default 16")
    p.add_argument("--sample", type=int, default=2,
                   help="episodes read to estimate frames per episode (default 2)")
    p.set_defaults(func=_plan)

    s = sub.add_parser("status", help="progress of a job from its committed markers (running or "
                                      "finished)")
    s.add_argument("out", help="the job's output directory")
    s.set_defaults(func=_status)
