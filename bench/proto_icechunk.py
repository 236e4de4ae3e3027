"""Prototype: Icechunk vs appf's marker protocol for committing point-cloud shards, on the same job
and the same loopback S3 server (moto). Not part of `make bench`: Icechunk is not a dependency of
appf (see docs/design-notes.md for the decision); run it with Icechunk importable, e.g.

    pip install --target /tmp/icechunk-lib --no-deps icechunk==1.1.21
    PYTHONPATH=/tmp/icechunk-lib .venv/bin/python bench/proto_icechunk.py [--episodes 16]

A job is run once to a local directory; its committed shards (arrays + attributes, same chunks,
shards and codecs) are then written to S3 (a) the appf way: encoded, one put per object, tables,
marker last; (b) with Icechunk: one forked session per shard (what Beam workers would hold), merged
and committed once by the driver. Printed: seconds and objects per way, and whether zarr-python
alone (no icechunk) opens what each way wrote.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import zarr

from appf.launch.runners import local_options
from appf.pipelines.config import JobConfig
from appf.pipelines.job import run_job
from appf.storage import (
    Location, encode_store, object_entry, objects_digest, open_group, read_markers,
    write_marker, write_store_objects,
)
from appf.storage.loopback_s3 import loopback_s3, new_bucket


def shard_arrays(src: zarr.Group) -> dict[str, tuple[np.ndarray, zarr.Array]]:
    return {f"{g}/{name}": (np.asarray(a[...]), a) for g in ("data", "meta")
            for name, a in src[g].arrays()}


def build_like(root: zarr.Group, arrays: dict, attrs: dict) -> None:
    """Re-create the arrays with their own chunks, shards and codecs."""
    for path, (data, like) in arrays.items():
        group = root.require_group(path.split("/")[0])
        if data.dtype.kind in "OUT":
            arr = group.create_array(path.split("/")[1], shape=data.shape, dtype=str)
        else:
            arr = group.create_array(path.split("/")[1], shape=data.shape, dtype=data.dtype,
                                     chunks=like.chunks, shards=like.shards,
                                     compressors=like.compressors)
        arr[...] = data
    root.attrs.update(attrs)


def marker_way(url: str, shards: dict, local: Location) -> float:
    loc = Location(url)
    t0 = time.perf_counter()
    for shard, (arrays, attrs, commit) in shards.items():
        encoded = encode_store(lambda r: build_like(r, arrays, attrs), 3)
        write_store_objects(loc, commit.path, encoded)
        objects = {f"{commit.path}/{k}": object_entry(v) for k, v in encoded.items()}
        for key in (commit.sft_path, commit.failures_path):
            data = local.read_bytes(key)
            loc.write_bytes(key, data)
            objects[key] = object_entry(data)
        commit.objects, commit.checksum = objects, objects_digest(objects, commit.path + "/")
        write_marker(loc, commit)
    return time.perf_counter() - t0


def icechunk_way(bucket: str, prefix: str, shards: dict, endpoint: str) -> tuple[float, object]:
    import icechunk

    storage = icechunk.s3_storage(bucket=bucket, prefix=prefix, endpoint_url=endpoint,
                                  allow_http=True, region="us-east-1", force_path_style=True,
                                  access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                                  secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    t0 = time.perf_counter()
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    forks = []
    for shard, (arrays, attrs, commit) in shards.items():  # on a cluster: one fork per worker task
        fork = session.fork()
        root = zarr.open_group(fork.store, path=commit.path, mode="a", zarr_format=3)
        build_like(root, arrays, attrs)
        forks.append(fork)
    session.merge(*forks)
    snapshot = session.commit(f"{len(shards)} shards")
    return time.perf_counter() - t0, (repo, snapshot)


def plain_zarr_opens(url: str, key: str) -> str:
    try:
        g = open_group(Location(url), key)
        return f"yes ({g['meta/episode_ends'][-1]} frames)"
    except Exception as e:  # noqa: BLE001 - the finding is the point
        return f"no ({type(e).__name__})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=16)
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="appf-proto-ic-")
    cfg = JobConfig.from_dict(dict(source="synthetic", out=out, progress_every_s=0, episodes_per_shard=4,
                                   source_options={"episodes": args.episodes, "steps": 40,
                                                   "height": 240, "width": 320, "seed": 0}))
    run_job(cfg, local_options(1))
    local = Location(out)
    shards = {}
    for shard, commit in read_markers(local).items():
        src = open_group(local, commit.path)
        shards[shard] = (shard_arrays(src), dict(src.attrs), commit)
    frames = sum(c.frames for *_, c in shards.values())
    with loopback_s3() as endpoint:
        bucket = new_bucket("proto")
        t_marker = marker_way(f"{bucket}/markers", shards, local)
        t_ice, (repo, snap) = icechunk_way(bucket.removeprefix("s3://"), "icechunk", shards, endpoint)
        n_marker = len(Location(f"{bucket}/markers").list())
        n_ice = len(Location(f"{bucket}/icechunk").list())
        session = repo.readonly_session(snapshot_id=snap)
        back = zarr.open_group(session.store, path=shards[0][2].path, mode="r")
        same = np.array_equal(back["data/point_cloud"][...], shards[0][0]["data/point_cloud"][0])
        key = shards[0][2].path
        print(f"{frames} frames in {len(shards)} shards")
        print(f"marker protocol : {t_marker:6.2f} s, {n_marker} objects (zarr + parquet + markers), "
              f"plain zarr-python opens it: {plain_zarr_opens(f'{bucket}/markers', key)}")
        print(f"icechunk        : {t_ice:6.2f} s, {n_ice} objects (point clouds only, no parquet), "
              f"read back through icechunk equal: {same}, plain zarr-python opens it: "
              f"{plain_zarr_opens(f'{bucket}/icechunk', key)}")
        print(f"icechunk / markers: {t_ice / t_marker:.2f}x")


if __name__ == "__main__":
    main()
