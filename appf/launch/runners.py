"""Turn the job's runner profile into Beam pipeline options (see runner_profiles).

local: Beam's in-process FnApiRunner, named explicitly (the DirectRunner would try Prism first,
which downloads a binary). dask: Beam's DaskRunner on a dask.distributed cluster (`address`, or a
LocalCluster started here and closed at the end), one episode per Dask partition. dataflow,
flink, spark: the portable runners, submitted with the flags the profile validated.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from apache_beam.options.pipeline_options import PipelineOptions

from appf.launch.runner_profiles import DASK_RUNNER, submission
from appf.pipelines.config import JobConfig

__all__ = ["DASK_RUNNER", "DASK_WORKER_ENV", "LOCAL_WORKER_ENV", "local_options",
           "pipeline_options", "single_threaded_pools"]

# dask.distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then hands freed
# memory back to the OS after every episode-sized numpy temporary and faults it back in on the
# next one (system time). appf's workers allocate the same sizes again and again; keep it.
# Setting any of glibc's thresholds also switches off its dynamic mmap threshold (mallopt(3)),
# which then stays at 128 KiB: every frame-sized temporary (a 320x240 float64 image is 1.8 MiB)
# would be mmap'ed and unmapped each time, page faults included. 32 MiB is the ceiling glibc's
# dynamic threshold would grow to on 64-bit; set it explicitly. (The nanny already sets OMP, MKL
# and OPENBLAS_NUM_THREADS to 1; OpenCV's pool is added: see LOCAL_WORKER_ENV.)
DASK_WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
                   "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "OPENCV_FOR_THREADS_NUM": "1"}

# One worker = one core. appf's numpy BLAS calls are small (n x 3) @ (3 x 3) products and its
# OpenCV calls per-frame filters: pool threads there only contend with the worker itself (a
# 1-worker 640x480 synthetic job: 46.9 frames/s single-threaded, 35.6 with OpenBLAS and OpenCV at a
# thread per core, 1.6x the CPU per frame), and N workers would run N x cores threads. Beam's local
# worker processes inherit this in their environment; the in-process worker and the Dask workers
# get the same (`single_threaded_pools`, DASK_WORKER_ENV). Scale with --workers.
LOCAL_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OPENCV_FOR_THREADS_NUM": "1"}


@contextlib.contextmanager
def _inherited_env(env: dict[str, str]) -> Iterator[None]:
    """`env` in os.environ while the context lives, for the worker processes started in it;
    values the user already set win; the environment is restored afterwards."""
    added = {k: v for k, v in env.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def single_threaded_pools() -> Iterator[None]:
    """This process's BLAS and OpenCV pools at one thread while the in-process worker runs (numpy
    and cv2 are loaded: the environment comes too late); restored afterwards. A thread count the
    user set in the environment wins."""
    import cv2
    from threadpoolctl import threadpool_limits

    blas = contextlib.nullcontext() if "OPENBLAS_NUM_THREADS" in os.environ \
        else threadpool_limits(limits=1, user_api="blas")
    cv2_threads = cv2.getNumThreads()
    if "OPENCV_FOR_THREADS_NUM" not in os.environ:
        cv2.setNumThreads(1)
    try:
        with blas:
            yield
    finally:
        cv2.setNumThreads(cv2_threads)


def local_options(workers: int = 1) -> PipelineOptions:
    mode = "in_memory" if workers == 1 else "multi_processing"
    return PipelineOptions(["--runner=FnApiRunner", f"--direct_running_mode={mode}",
                            f"--direct_num_workers={workers}"])


@contextlib.contextmanager
def pipeline_options(cfg: JobConfig) -> Iterator[PipelineOptions]:
    """Options for `cfg`'s runner profile (validated first); a LocalCluster started for the dask
    profile lives as long as the context. Flags, not keyword arguments: Beam silently discards
    keyword options it does not know under their flag name (`dask_client_address=` is one)."""
    sub = submission(cfg)
    if sub.runner == "local":
        with _inherited_env(LOCAL_WORKER_ENV) if cfg.workers > 1 else single_threaded_pools():
            yield PipelineOptions(sub.flags)
        return
    if sub.local_cluster_workers is None:
        yield PipelineOptions(sub.flags)
        return
    import dask
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v
                          for k, v in DASK_WORKER_ENV.items()}), \
            LocalCluster(n_workers=sub.local_cluster_workers, threads_per_worker=1,
                         processes=True, dashboard_address=":0") as cluster:
        yield PipelineOptions([*sub.flags, f"--dask_client_address={cluster.scheduler_address}"])
