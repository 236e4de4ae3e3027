"""``appf export dp3 OUT_DIR --to FILE.zarr [--n-points N] [--keys K ...]``."""

from __future__ import annotations

import argparse

from appf.exports.dp3 import DEFAULT_KEYS


def _export_dp3(args: argparse.Namespace) -> int:
    from appf.exports.dp3 import export_dp3

    done = export_dp3(args.dir, args.to, n_points=args.n_points, keys=args.keys)
    points = f", {done.n_points} points per frame" if done.n_points else ""
    print(f"wrote {done.path}: {done.episodes} episodes, {done.frames} frames from {done.shards} "
          f"shard(s), keys {', '.join(done.keys)}{points} (zarr format 2: DP3 / diffusion_policy "
          "ReplayBuffer.copy_from_path reads it)")
    return 0


def register(formats: argparse._SubParsersAction) -> None:
    d = formats.add_parser("dp3", help="all committed shards as ONE zarr-2 replay buffer "
                                       "(DP3, diffusion_policy)")
    d.add_argument("dir", metavar="OUT_DIR", help="output directory of `appf reannotate`")
    d.add_argument("--to", required=True, metavar="FILE.zarr", help="the store to write (must not exist)")
    d.add_argument("--n-points", type=int, help="re-sample each cloud to N points by farthest point "
                                                "sampling (DP3 uses 512 for some tasks)")
    d.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS),
                   help=f"data/ arrays to export (default: {' '.join(DEFAULT_KEYS)}; 'all' for every one)")
    d.set_defaults(func=_export_dp3)
