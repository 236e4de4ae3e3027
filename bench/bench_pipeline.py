"""The job's throughput, scaling and start-up cost, each against a baseline measured in the same
run (every job runs in a fresh process; memory is sampled from its whole process tree):

- overhead: Beam local runner, 1 worker, vs the same pure functions in a plain loop (goal <= 1.15x)
- scaling:  first the machine's own ceiling: 2 plain loops in 2 processes vs 1 (no Beam, equal
            halves of the episodes, one BLAS/OpenCV thread each); then local `--workers 2` vs
            `--workers 1` (goal >= 1.8x); Dask LocalCluster with 1 and 2
            workers vs local with 1 worker (goal: 2 Dask workers >= 1.6x local 1), frames/s and
            peak RSS of the largest process and of the whole tree
- memory:   Dask with 2 workers at several episode counts: the peak per process must stay flat
- startup:  CPU seconds for a worker process to import Beam's worker, unpickle the fused
            model-free step and set it up (goal < 1.5 s)

    python bench/bench_pipeline.py [--episodes 32] [--steps 40] [--height 240 --width 320]
        [--parts overhead scaling memory startup] [--memory-episodes 8 16 32] [--repeats N]
        [--json FILE]

Each job is timed after a one-episode warm-up in its process; with `--repeats N` the jobs run in
N rounds (one of each per round) and each job's fastest run is shown, with all runs' seconds (the
machine's speed drifts by 10-20% from minute to minute here). A Dask LocalCluster's start is
printed apart, not counted. psutil (a dependency of dask.distributed) samples memory and CPU time
of the whole process tree (warm-up and cluster start included in the CPU). CPU per frame shows the
cost of the parallel machinery where the wall clock cannot: on a machine whose CPU is shared (or
capped per session) a second worker gets no extra CPU, and frames/s cannot scale. The machine's other load shows in
every figure: compare ratios, and rerun on a quiet machine for absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain_loop(cfg, out: Path) -> int:
    """Read, annotate, build clouds and SFT rows, write shards and records: no Beam."""
    import pyarrow as pa

    from appf.annotators.apply import annotate_episode_depth, annotate_episode_masks
    from appf.annotators.registry import make_depth_annotator, make_masker
    from appf.pipelines.process_episode import process_episode
    from appf.pipelines.sinks.tables import parquet_bytes
    from appf.pipelines.sinks.zarr_shards import encode_shard
    from appf.pipelines.sources import make_source
    from appf.schemas import check_episode
    from appf.storage import Location, layout, write_store_objects

    source = make_source(cfg.source, cfg.source_options)
    depth, masker = make_depth_annotator("ground_truth"), make_masker("ground_truth")
    shards: dict[int, list] = {}
    frames = 0
    for ref in source.list_refs():
        ep = annotate_episode_depth(check_episode(source.read(ref)), depth, cfg.batch_frames)
        labels = annotate_episode_masks(ep, masker)
        pe = process_episode(ep, labels, cfg, ref.index, source.info.default_crop)
        shards.setdefault(cfg.shard_of(ref.index), []).append(pe)
        frames += pe.num_frames
    loc = Location(str(out))
    for shard, eps in shards.items():  # the shard writer's own encoders and store writes
        write_store_objects(loc, layout.shard_zarr_key(shard),
                            encode_shard(eps, {}, cfg.zarr_format, cfg.chunk_frames))
        loc.write_bytes(layout.sft_key(shard), parquet_bytes(pa.concat_tables([e.sft for e in eps])))
    return frames


def child(kind: str, workers: int, source_options: dict, out: Path) -> dict:
    """One measured job in this (fresh) process, after a one-episode warm-up of the same kind
    (imports, caches): frames, seconds of the job, and seconds to start a Dask LocalCluster
    (not counted in the job's seconds)."""
    from appf.launch.runners import pipeline_options, single_threaded_pools
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    def config(opts: dict, where: Path) -> JobConfig:
        return JobConfig.from_dict(dict(
            source="synthetic", source_options=opts, out=str(where), progress_every_s=0,
            depth="ground_truth", masks="ground_truth",
            runner="dask" if kind == "dask" else "local", workers=workers))

    warm = config({**source_options, "episodes": 1}, out.with_name(out.name + "-warm"))
    if kind == "loop" and workers > 1:
        return parallel_loops(workers, warm, config(source_options, out))
    if kind == "loop":  # one BLAS and OpenCV thread, as the job's in-process worker has
        with single_threaded_pools():
            plain_loop(warm, Path(warm.out))
            start = time.perf_counter()
            frames = plain_loop(config(source_options, out), out)
        return {"frames": frames, "seconds": time.perf_counter() - start, "cluster_start_s": 0.0}
    with pipeline_options(warm) as options:
        run_job(warm, options)
    cfg = config(source_options, out)
    start = time.perf_counter()
    with pipeline_options(cfg) as options:
        cluster_start_s = time.perf_counter() - start if kind == "dask" else 0.0
        start = time.perf_counter()
        frames = run_job(cfg, options).frames
        seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": seconds, "cluster_start_s": cluster_start_s}


def _warm_then_wait(warm, barrier) -> None:
    from appf.launch.runners import single_threaded_pools

    with single_threaded_pools():
        plain_loop(warm, Path(warm.out + f"-{os.getpid()}"))
    barrier.wait()


def _loop_part(cfg) -> int:
    from appf.launch.runners import single_threaded_pools

    with single_threaded_pools():
        return plain_loop(cfg, Path(cfg.out))


def parallel_loops(n: int, warm, cfg) -> dict:
    """The machine's own ceiling: `n` plain loops in `n` processes (one BLAS/OpenCV thread each),
    each on an equal part of the same episodes (seed offsets), after a warm-up in each process;
    no Beam and no communication. Only the loops are timed."""
    import multiprocessing as mp

    from appf.pipelines.config import JobConfig

    total, seed = cfg.source_options["episodes"], cfg.source_options.get("seed", 0)
    per = total // n
    parts = [JobConfig.from_dict({**cfg.to_dict(), "out": f"{cfg.out}-{i}",
                                  "source_options": {**cfg.source_options, "seed": seed + i * per,
                                                     "episodes": per}}) for i in range(n)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(n + 1)
    with ctx.Pool(n) as pool:
        warming = [pool.apply_async(_warm_then_wait, (warm, barrier)) for _ in range(n)]
        barrier.wait()  # every process imported and warmed up
        for w in warming:
            w.get()
        start = time.perf_counter()
        frames = sum(pool.map(_loop_part, parts, chunksize=1))
        seconds = time.perf_counter() - start
    for i in range(n):
        shutil.rmtree(f"{cfg.out}-{i}", ignore_errors=True)
    return {"frames": frames, "seconds": seconds, "cluster_start_s": 0.0}


class TreeMemory:
    """Samples the RSS and CPU time of a process and its descendants every `every_s` seconds
    (a process's CPU after its last sample is missed: under `every_s` per process); keeps the CPU
    time series for `one_busy_s`."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.root, self.every_s = psutil.Process(pid), every_s
        self.peak_process = self.peak_total = 0
        self.cpu_s: dict[int, float] = {}
        self.series: list[tuple[float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss, live = [], {}
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                    t = p.cpu_times()
                    self.cpu_s[p.pid] = live[p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            self.series.append((time.monotonic(), live))
            if rss:
                self.peak_process = max(self.peak_process, max(rss))
                self.peak_total = max(self.peak_total, sum(rss))
            self._stop.wait(self.every_s)

    def one_busy_s(self, a: int, b: int) -> float:
        """Seconds during which exactly one of processes `a`, `b` ran (over half a core) while
        the other had stopped (under a tenth of one): the time a static split wastes."""
        total = 0.0
        for (t0, c0), (t1, c1) in zip(self.series, self.series[1:]):
            dt = t1 - t0
            if not all(p in c0 and p in c1 for p in (a, b)) or dt <= 0:
                continue  # both alive in both samples
            ra, rb = ((c1[p] - c0[p]) / dt for p in (a, b))
            total += dt if (ra > 0.5 and rb < 0.1) or (rb > 0.5 and ra < 0.1) else 0.0
        return total

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(kind: str, workers: int, source_options: dict, tmp: Path) -> dict:
    """Run `child` in a fresh interpreter; frames/s and peak memory of its process tree."""
    out = tmp / f"{kind}-{workers}-{source_options['episodes']}-{time.monotonic_ns()}"
    args = [sys.executable, __file__, "--child", kind, str(workers), json.dumps(source_options),
            str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    with TreeMemory(proc.pid) as mem:
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} x{workers} failed:\n{stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + "-warm"), ignore_errors=True)
    got = json.loads(stdout.strip().splitlines()[-1])
    busiest = sorted((k for k in mem.cpu_s if k != proc.pid), key=mem.cpu_s.get, reverse=True)[:2]
    return {**got, "frames_per_s": got["frames"] / got["seconds"],
            "peak_process_mib": mem.peak_process / 2**20, "peak_total_mib": mem.peak_total / 2**20,
            "cpu_s": sum(mem.cpu_s.values()), "worker_cpu_s": [mem.cpu_s[k] for k in busiest],
            "one_worker_busy_s": mem.one_busy_s(*busiest) if workers == 2 and len(busiest) == 2
            else None}


def best_of_rounds(jobs: dict[str, tuple[str, int]], opts: dict, tmp: Path,
                   repeats: int) -> dict[str, dict]:
    """Each job (kind, workers) `repeats` times, one of each per round (so a slow spell of the
    machine hits every job alike); per job the fastest run, with every run's seconds kept."""
    runs: dict[str, list[dict]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, (kind, workers) in jobs.items():
            runs[name].append(measure(kind, workers, opts, tmp))
    return {name: {**min(rs, key=lambda r: r["seconds"]), "all_seconds": [r["seconds"] for r in rs]}
            for name, rs in runs.items()}


def row(label: str, r: dict, base: dict | None = None) -> str:
    ratio = f"  {r['frames_per_s'] / base['frames_per_s']:5.2f}x" if base else ""
    cluster = (f" + {r['cluster_start_s']:.1f} s cluster start" if r["cluster_start_s"] else "")
    cpu_ratio = (f" ({base['cpu_s'] / base['frames'] / (r['cpu_s'] / r['frames']):4.2f}x the "
                 "baseline's CPU efficiency)") if base else ""
    workers = ("; busiest child processes " + " / ".join(f"{c:.0f}" for c in r["worker_cpu_s"])
               + " CPU-s") if r["worker_cpu_s"] else ""
    if r.get("one_worker_busy_s") is not None:
        workers += f", {r['one_worker_busy_s']:.1f} s with one of them idle"
    runs = r.get("all_seconds", [])
    runs = ("; runs " + ", ".join(f"{x:.1f}" for x in runs) + " s") if len(runs) > 1 else ""
    return (f"{label:<22}{r['frames_per_s']:8.1f} frames/s ({r['seconds']:6.1f} s{cluster}{runs})"
            f"{ratio}\n"
            f"{'':<22}CPU {1000 * r['cpu_s'] / r['frames']:6.1f} ms/frame{cpu_ratio}{workers}\n"
            f"{'':<22}peak RSS: largest process {r['peak_process_mib']:6.0f} MiB, "
            f"tree {r['peak_total_mib']:6.0f} MiB")


def startup_cpu_s() -> dict:
    """CPU seconds for a fresh worker process: Beam's worker module, the fused step unpickled and
    set up (model-free backends), against a bare `import apache_beam`."""
    code = r"""
import resource, sys, json
t = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
import apache_beam.runners.worker.sdk_worker_main
from apache_beam.internal import pickler
fn = pickler.loads(bytes.fromhex(sys.stdin.read()))
fn.setup()
print(json.dumps({"cpu_s": t(), "torch": "torch" in sys.modules}))
"""
    bare = "import resource, apache_beam; r = resource.getrusage(resource.RUSAGE_SELF); " \
           "print('{\"cpu_s\": %f}' % (r.ru_utime + r.ru_stime))"
    from apache_beam.internal import pickler

    from appf.pipelines.config import JobConfig
    from appf.pipelines.graph import AnnotateAndStage

    blob = pickler.dumps(AnnotateAndStage(JobConfig(), "ground_truth", "ground_truth", None, {}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    for _ in range(3):
        w = subprocess.run([sys.executable, "-c", code], input=blob.hex(), env=env, text=True,
                           capture_output=True, check=True)
        b = subprocess.run([sys.executable, "-c", bare], env=env, text=True,
                           capture_output=True, check=True)
        runs.append((json.loads(w.stdout.splitlines()[-1]), json.loads(b.stdout.splitlines()[-1])))
    worker = min(r[0]["cpu_s"] for r in runs)
    return {"worker_cpu_s": worker, "bare_beam_cpu_s": min(r[1]["cpu_s"] for r in runs),
            "torch_imported": any(r[0]["torch"] for r in runs)}


def overhead_part(opts: dict, tmp: Path, repeats: int) -> dict:
    got = best_of_rounds({"loop": ("loop", 1), "beam": ("local", 1)}, opts, tmp, repeats)
    loop, beam1 = got["loop"], got["beam"]
    fig = {"loop": loop, "local_1": beam1, "beam_overhead_x": beam1["seconds"] / loop["seconds"],
           "beam_cpu_overhead_x": beam1["cpu_s"] / loop["cpu_s"]}
    print(row("plain loop", loop))
    print(row("beam local, 1 worker", beam1, loop))
    print(f"beam overhead: {fig['beam_overhead_x']:.2f}x the loop's time, "
          f"{fig['beam_cpu_overhead_x']:.2f}x its CPU (goal <= 1.15x)")
    return fig


def scaling_part(opts: dict, tmp: Path, repeats: int) -> dict:
    got = best_of_rounds({"loop_1": ("loop", 1), "loop_2": ("loop", 2), "local_1": ("local", 1),
                          "local_2": ("local", 2), "dask_1": ("dask", 1), "dask_2": ("dask", 2)},
                         opts, tmp, repeats)
    print(row("plain loop, 1 process", got["loop_1"]))
    print(row("plain loops, 2 processes", got["loop_2"], got["loop_1"]).replace(
        "\n", "  (this machine's ceiling for 2 workers)\n", 1))
    print(row("local, 1 worker", got["local_1"]))
    print(row("local, 2 workers", got["local_2"], got["local_1"]).replace(
        "\n", "  (goal >= 1.8x)\n", 1))
    print(row("dask, 1 worker", got["dask_1"], got["local_1"]))
    print(row("dask, 2 workers", got["dask_2"], got["local_1"]).replace(
        "\n", "  (goal >= 1.6x)\n", 1))
    return got


def memory_part(opts: dict, tmp: Path, episode_counts: list[int]) -> dict:
    fig = {}
    for n in episode_counts:
        fig[n] = measure("dask", 2, {**opts, "episodes": n}, tmp)
        print(row(f"dask x2, {n:3d} episodes", fig[n]))
    return fig


def startup_part() -> dict:
    s = startup_cpu_s()
    print(f"worker start-up (model-free step): {s['worker_cpu_s']:.2f} CPU-s "
          f"(goal < 1.5 s; bare `import apache_beam` {s['bare_beam_cpu_s']:.2f} s); "
          f"torch imported: {s['torch_imported']}")
    return s


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--parts", nargs="*", default=["overhead", "scaling", "memory", "startup"])
    ap.add_argument("--memory-episodes", type=int, nargs="*", default=[8, 16, 32])
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of the overhead and scaling jobs; each job's fastest run is shown")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.child:
        kind, workers, opts, out = args.child
        print(json.dumps(child(kind, int(workers), json.loads(opts), Path(out))))
        return
    opts = {"episodes": args.episodes, "steps": args.steps, "height": args.height,
            "width": args.width, "seed": 0}
    print(f"{args.episodes} synthetic episodes x {args.steps} steps at {args.width}x{args.height}, "
          f"ground-truth depth and masks; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    fig: dict = {"episodes": args.episodes, "steps": args.steps}
    tmp = Path(tempfile.mkdtemp(prefix="appf-bench-"))
    try:
        if "overhead" in args.parts:
            fig["overhead"] = overhead_part(opts, tmp, args.repeats)
        if "scaling" in args.parts:
            fig["scaling"] = scaling_part(opts, tmp, args.repeats)
        if "memory" in args.parts:
            fig["memory"] = memory_part(opts, tmp, args.memory_episodes)
        if "startup" in args.parts:
            fig["startup"] = startup_part()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
