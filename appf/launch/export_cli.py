"""``appf export``: a finished run's committed episodes in the formats other projects read.
Each exporter is a module with ``register(subparsers)`` listed in EXPORTERS: ``dp3`` (one zarr-2
replay buffer for DP3 / diffusion_policy), ``lerobot`` (a LeRobot v3.0 dataset)."""

from __future__ import annotations

import argparse
import importlib

EXPORTERS: tuple[str, ...] = ("appf.launch.export_dp3_cli", "appf.launch.export_lerobot")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's committed episodes in another project's format")
    targets = p.add_subparsers(dest="target", required=True)
    for module in EXPORTERS:
        importlib.import_module(module).register(targets)
