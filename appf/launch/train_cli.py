"""``appf train``: the action expert (``expert``) and the VLM fine-tuning (``vlm``).

``--shards`` / ``--records`` take a local folder (a job output folder or its pointclouds/ or sft/
folder) or a published dataset id ``owner/name[@revision]`` (downloaded once into the
huggingface_hub cache; HF_HUB_OFFLINE=1 reads the cache only).
"""

from __future__ import annotations

import argparse
import sys


def _expert(args: argparse.Namespace) -> int:
    from appf.training.allocator import apply_training_allocator

    # before the training allocates: freed activation memory stays in the heap for the next step
    allocator = apply_training_allocator()
    from appf.training.config import ExpertConfig
    from appf.training.sources import EXPERT_FILES, expert_ignore_patterns, resolve_dataset
    from appf.training.trainer import train_expert

    overrides = {"phase": args.phase, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}
    cfg = (ExpertConfig.from_file(args.config, **overrides) if args.config
           else ExpertConfig.from_dict({k: v for k, v in overrides.items() if v is not None}))
    # Phase 1 reads no point cloud, so a dataset id downloads none (phase 2 fetches them later).
    shards = resolve_dataset(args.shards, EXPERT_FILES, ignore=expert_ignore_patterns(cfg.phase))
    print(f"[appf train] allocator: {allocator.detail}", file=sys.stderr)
    result = train_expert(shards, args.out, cfg, init=args.init, device=args.device)
    if result.rank != 0:
        return 0
    loss = "n/a" if result.last_loss is None else f"{result.last_loss:.4g}"
    print(f"trained {cfg.phase} to step {result.step} (last logged loss {loss}); "
          f"checkpoint {result.checkpoint}")
    return 0


def _vlm(args: argparse.Namespace) -> int:
    from appf.training.vlm.train import train_vlm

    final = train_vlm(args.records, args.model, args.out, steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, max_length=args.max_length,
                      include_out_of_view=args.include_out_of_view)
    print(f"fine-tuned VLM saved to {final}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train the action expert or fine-tune the VLM "
                                  "from appf outputs")
    sub = train.add_subparsers(dest="train_command", required=True)

    e = sub.add_parser("expert", help="APPF action expert: phase 1 pretrain (no point clouds), "
                       "phase 2 finetune")
    e.add_argument("--phase", choices=["pretrain", "finetune"], required=True)
    e.add_argument("--shards", required=True, help="job output folder, pointclouds/ folder, or dataset id")
    e.add_argument("--init", help="phase-1 checkpoint or run folder to start phase 2 from")
    e.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, tensorboard/); "
                   "an existing run is resumed from its latest checkpoint")
    e.add_argument("--steps", type=int, help="total optimiser steps (default 1000)")
    e.add_argument("--batch-size", type=int, help="windows per step per process (default 128)")
    e.add_argument("--seed", type=int, help="seed (default 0)")
    e.add_argument("--config", help="YAML/JSON expert config (appf.training.config.ExpertConfig keys); "
                   "command-line flags win")
    e.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    e.set_defaults(func=_expert)

    v = sub.add_parser("vlm", help="fine-tune a local vision-language model on the SFT records")
    v.add_argument("--records", required=True, help="job output folder, sft/ folder, or dataset id")
    v.add_argument("--model", required=True, help="local model folder (config.json, weights, processor)")
    v.add_argument("--out", required=True, help="run folder (Trainer checkpoints, final/)")
    v.add_argument("--steps", type=int, default=100)
    v.add_argument("--batch-size", type=int, default=2)
    v.add_argument("--lr", type=float, default=1e-5)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-length", type=int, help="truncate samples to this many tokens")
    v.add_argument("--include-out-of-view", action="store_true",
                   help="also train on keyframes whose anchor lies outside the image")
    v.set_defaults(func=_vlm)


if __name__ == "__main__":  # pragma: no cover
    from appf.launch.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
