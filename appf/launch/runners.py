"""Runner profiles: turn the job's runner choice into Beam pipeline options.

local: Beam's in-process FnApiRunner, named explicitly (the DirectRunner would try Prism first,
which downloads a binary). dask: Beam's DaskRunner on a dask.distributed cluster (`--dask-address`,
or a LocalCluster started here and closed at the end).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from apache_beam.options.pipeline_options import PipelineOptions

from appf.pipelines.config import JobConfig

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def local_options(workers: int = 1) -> PipelineOptions:
    mode = "in_memory" if workers == 1 else "multi_processing"
    return PipelineOptions(flags=[], runner="FnApiRunner", direct_running_mode=mode,
                           direct_num_workers=workers)


@contextlib.contextmanager
def pipeline_options(cfg: JobConfig) -> Iterator[PipelineOptions]:
    """Options for `cfg.runner`; a LocalCluster started for the dask profile lives as long as the
    context."""
    if cfg.runner == "local":
        yield local_options(cfg.workers)
        return
    if cfg.dask_address:
        yield PipelineOptions(flags=[], runner=DASK_RUNNER, dask_client_address=cfg.dask_address)
        return
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield PipelineOptions(flags=[], runner=DASK_RUNNER, dask_client_address=cluster.scheduler_address)
