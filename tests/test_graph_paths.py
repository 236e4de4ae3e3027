"""Which graph a job gets: model-free backends run one fused step per episode and never import
torch, transformers or RunInference (driver or worker); Dask spreads episodes over its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from appf.launch.runners import pipeline_options
from appf.pipelines.job import run_job
from pipeline_helpers import SMALL_SOURCE, shard_checksums, small_config

HEAVY = ("torch", "transformers", "apache_beam.ml.inference.base")

_JOB_AND_WORKER = r"""
import json, pickle, sys
from apache_beam.internal import pickler
from appf.launch.runners import local_options
from appf.pipelines.config import JobConfig
from appf.pipelines.graph import AnnotateAndStage
from appf.pipelines.job import run_job

cfg = JobConfig.from_dict(json.loads(sys.argv[1]))
summary = run_job(cfg, local_options(1))
driver = [m for m in %(heavy)r if m in sys.modules]
# what a worker process receives: the pickled fused step
blob = pickler.dumps(AnnotateAndStage(cfg, "ground_truth", "ground_truth", None, {}))
print(json.dumps({"episodes": summary.episodes, "driver": driver, "blob": blob.hex()}))
""" % {"heavy": HEAVY}

_WORKER = r"""
import sys
from apache_beam.internal import pickler
fn = pickler.loads(bytes.fromhex(sys.stdin.read()))
fn.setup()
print([m for m in %(heavy)r if m in sys.modules])
""" % {"heavy": HEAVY}


def _python(code: str, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_model_free_job_imports_no_torch_in_driver_or_worker(tmp_path):
    cfg = small_config(tmp_path / "out", source_options={**SMALL_SOURCE, "episodes": 2})
    result = json.loads(_python(_JOB_AND_WORKER, json.dumps(cfg.to_dict())))
    assert result["episodes"] == 2
    assert result["driver"] == []
    assert _python(_WORKER, stdin=result["blob"]) == "[]"


def test_dask_spreads_episodes_over_both_workers(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    pids.mkdir()
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    cfg = small_config(tmp_path / "dask", runner="dask", workers=2,
                       source="pid_source:PidSource",
                       source_options={**SMALL_SOURCE, "episodes": 8, "pid_dir": str(pids)})
    with pipeline_options(cfg) as options:
        summary = run_job(cfg, options)
    assert summary.episodes == 8 and summary.failures == 0
    reads = [p.name.split("-") for p in pids.iterdir()]
    assert sorted({int(i) for i, _ in reads}) == list(range(8))
    per_worker = {}
    for _, pid in reads:
        per_worker[pid] = per_worker.get(pid, 0) + 1
    assert len(per_worker) == 2, per_worker  # one partition per episode: both workers get some
    local = small_config(tmp_path / "local", source="pid_source:PidSource",
                         source_options={**SMALL_SOURCE, "episodes": 8, "pid_dir": str(pids)})
    with pipeline_options(local) as options:
        run_job(local, options)
    assert shard_checksums(tmp_path / "dask") == shard_checksums(tmp_path / "local")


def test_learned_path_never_pickles_an_episode_to_estimate_its_size(monkeypatch):
    """The RunInference passes in one fused stage: the worker samples every output's size with
    its coder; typed outputs use EpisodeWorkCoder's array-size estimate, so no episode is
    pickled at all (untyped, each pass pickled every episode twice)."""
    import apache_beam as beam

    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.graph import ReadEpisode
    from appf.pipelines.inference import DepthHandler, MaskHandler, annotation_pass
    from appf.pipelines.sources import make_source
    from appf.pipelines.work import EpisodeWork

    pickled = []
    reduce = EpisodeWork.__reduce_ex__
    monkeypatch.setattr(EpisodeWork, "__reduce_ex__",
                        lambda self, proto: pickled.append(self.ref.index) or reduce(self, proto))
    cfg = JobConfig.from_dict({"source_options": {**SMALL_SOURCE, "episodes": 3}})
    refs = make_source("synthetic", cfg.source_options).list_refs()
    from apache_beam.testing.util import assert_that, equal_to

    with beam.Pipeline(options=local_options(1)) as p:
        done = (p | beam.Create(refs, reshuffle=False)
             | beam.ParDo(ReadEpisode(cfg)).with_output_types(EpisodeWork)
             | "Depth" >> annotation_pass(DepthHandler("ground_truth", 8, None, 2))
             | "Masks" >> annotation_pass(MaskHandler("ground_truth", episodes_per_batch=2))
             | beam.Map(lambda w: (w.ref.index, w.failure, w.labels is not None)))
        assert_that(done, equal_to([(0, None, True), (1, None, True), (2, None, True)]))
    assert pickled == []


def test_local_dask_cluster_workers_keep_freed_memory(tmp_path):
    """dask.distributed's default MALLOC_TRIM_THRESHOLD_ (64 KiB) makes glibc return and re-fault
    every episode-sized temporary; the cluster appf starts raises it in its workers, and sets the
    mmap threshold that setting it would otherwise freeze at 128 KiB."""
    from distributed import Client

    from appf.launch.runners import DASK_WORKER_ENV

    cfg = small_config(tmp_path / "dask", runner="dask", workers=1)
    with pipeline_options(cfg) as options:
        address = options.get_all_options()["address"]
        with Client(address) as client:
            got = client.run(lambda: {k: os.environ.get(k) for k in DASK_WORKER_ENV})
            faults = client.run(_page_faults_of_frame_temporaries)
    assert list(got.values()) == [DASK_WORKER_ENV]
    # 50 frame-sized (1.8 MiB) temporaries: mmap'ed each time they would fault ~450 pages each
    assert max(faults.values()) < 2000


def _worker_pools() -> dict[str, int]:
    """Threads of this process's OpenCV pool and of its BLAS libraries (the largest)."""
    import cv2
    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return {"opencv": cv2.getNumThreads(), "blas": max(blas)}


def test_in_process_worker_runs_one_blas_and_opencv_thread(tmp_path, monkeypatch):
    """The 1-worker job runs in this process, where numpy and cv2 loaded before any environment
    could be set: their pools are limited to one thread while the job runs, then restored."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    for key in ("OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        monkeypatch.delenv(key, raising=False)
    import cv2

    cv2.setNumThreads(2)
    before = _worker_pools()
    with pipeline_options(small_config(tmp_path / "one", workers=1)) as options:
        with beam.Pipeline(options=options) as p:
            got = (p | beam.Create(range(2), reshuffle=False)
                   | beam.Map(lambda _, launcher=os.getpid(): (os.getpid() == launcher,
                                                              *_worker_pools().values())))
            assert_that(got, equal_to([(True, 1, 1)] * 2))
    assert _worker_pools() == before and before["opencv"] == 2


def test_in_process_worker_keeps_the_users_blas_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    before = _worker_pools()["blas"]
    with pipeline_options(small_config(tmp_path / "one", workers=1)):
        assert _worker_pools()["blas"] == before


def _page_faults_of_frame_temporaries() -> int:
    import resource

    import numpy as np

    np.ones((240, 320, 3)).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        np.ones((240, 320, 3)).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_local_multi_process_workers_run_one_blas_thread(tmp_path, monkeypatch):
    """Beam's local worker processes inherit the launcher's environment: one OpenBLAS/OpenMP
    thread each (not one per core), the launcher's environment restored afterwards, and a
    value the user set kept."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    monkeypatch.delenv("OPENCV_FOR_THREADS_NUM", raising=False)
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    cfg = small_config(tmp_path / "local", workers=2)
    with pipeline_options(cfg) as options:
        with beam.Pipeline(options=options) as p:
            got = (p | beam.Create(range(4), reshuffle=False)
                   | beam.Map(lambda _, launcher=os.getpid(): (
                       os.getpid() != launcher, *(os.environ.get(k) for k in names),
                       __import__("cv2").getNumThreads())))
            assert_that(got, equal_to([(True, "1", "1", "3", 1)] * 4))
    assert "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "3"
