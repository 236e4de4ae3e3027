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
           "pipeline_options"]

# dask.distributed starts workers with MALLOC_TRIM_THRESHOLD_=65536: glibc then hands freed
# memory back to the OS after every episode-sized numpy temporary and faults it back in on the
# next one (system time). appf's workers allocate the same sizes again and again; keep it.
# Setting any of glibc's thresholds also switches off its dynamic mmap threshold (mallopt(3)),
# which then stays at 128 KiB: every frame-sized temporary (a 320x240 float64 image is 1.8 MiB)
# would be mmap'ed and unmapped each time, page faults included. 32 MiB is the ceiling glibc's
# dynamic threshold would grow to on 64-bit; set it explicitly.
DASK_WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
                   "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}

# Beam's multi-process local workers inherit this process's environment, where OpenBLAS/OpenMP
# start one thread per core: on 640x480 frames the renderer's (n x 3) @ (3 x 3) products then
# run on spinning BLAS threads, twice the CPU for the same work, and N worker processes compete
# for the cores with N x cores threads. One thread per worker process, as dask.distributed does.
LOCAL_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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
    if sub.runner == "local" and cfg.workers > 1:
        with _inherited_env(LOCAL_WORKER_ENV):
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
