"""`appf plan CONFIG`, `appf status OUT` and `appf publish OUT`: a job before it runs, while or
after it runs, and its publication on the Hugging Face Hub."""

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


def _publish(args: argparse.Namespace) -> int:
    from appf.launch.publish import explain_hub_error, publish
    from appf.launch.publish_plan import plan_upload
    from appf.pipelines.sinks.commits import read_commits
    from appf.storage import Location

    if args.plan_only:
        loc = Location(args.out)
        plan = plan_upload(loc, read_commits(loc))
        for i, c in enumerate(plan.commits, 1):
            print(f"commit {i}: {len(c.files)} files, {c.bytes} bytes: {c.message}")
        print(f"{len(plan.shards)} committed shard(s): {plan.files} files, {plan.bytes} bytes in "
              f"{len(plan.commits)} commit(s) (into an empty repo)")
        return 0
    try:
        result = publish(args.out, args.repo, private=args.private, revision=args.revision,
                         commits_per_hour=args.commits_per_hour)
    except Exception as e:
        if (err := explain_hub_error(e, args.repo)) is not None:
            raise err from e
        raise
    print(f"published {args.out} -> {result.repo_id}@{result.revision} commit {result.commit}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print what a job would do (episodes, shards, frames, "
                                    "CPU/GPU hours) without running it")
    p.add_argument("config", nargs="?", help="YAML/JSON job config (flags below win)")
    p.add_argument("--source", help="dataset source (default synthetic)")
    p.add_argument("--input", help="input path of the dataset")
    p.add_argument("--episodes", type=int, help="number of episodes (synthetic source)")
    p.add_argument("--seed", type=int, help="seed (synthetic source)")
    p.add_argument("--source-option", action="append", metavar="KEY=VALUE",
                   help="one source option (repeatable), as for reannotate")
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

    u = sub.add_parser("publish", help="upload the committed shards, manifest and dataset card "
                                       "to a Hugging Face Hub dataset repo")
    u.add_argument("out", help="the job's output directory or URL")
    u.add_argument("--repo", required=True, help="owner/name of the dataset repo")
    u.add_argument("--private", action="store_true", help="create the repo private")
    u.add_argument("--revision", help="branch to commit to (created if missing; default main)")
    u.add_argument("--commits-per-hour", type=float, default=100,
                   help="pace commits under the Hub's rate limit (default 100)")
    u.add_argument("--plan-only", action="store_true",
                   help="print the commits an upload into an empty repo would make; no network")
    u.set_defaults(func=_publish)
