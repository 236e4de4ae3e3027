"""Runner profiles: validate a job's runner options and turn them into the Beam submission
(pipeline flags, worker image, resources), before anything is submitted.

Profiles: local (Beam's FnApiRunner), dask (Beam's DaskRunner), dataflow, flink and spark
(portable runners on a worker image). Options come from `runner_options` in the config or
`--runner-opt KEY=VALUE`; the image from `image` / `--image` (the project's Dockerfile builds it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from appf.pipelines.config import JobConfig
from appf.schemas import ConfigError

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
FLINK_VERSIONS = ("1.19", "1.20", "2.0", "2.1", "2.2")  # Beam 2.77's PUBLISHED_FLINK_VERSIONS
_ACCELERATOR = re.compile(r"^type:[a-z0-9-]+;count:[1-9][0-9]*(;install-nvidia-driver)?$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
_REMOTE_OUT = ("gs://", "s3://", "gcs://", "abfs://", "az://", "hdfs://")


@dataclass(frozen=True)
class Submission:
    """What a job submits: Beam pipeline flags, the worker image and the resources asked for."""

    runner: str
    flags: list[str]
    image: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    local_cluster_workers: int | None = None  # dask without an address: a LocalCluster here

    def text(self, cfg: JobConfig) -> str:
        """The dry-run printout: everything that would be submitted, as JSON."""
        return json.dumps({
            "runner": self.runner, "pipeline_options": self.flags, "image": self.image,
            "resources": self.resources, "local_cluster_workers": self.local_cluster_workers,
            "job": {"source": cfg.source, "source_options": cfg.source_options, "out": cfg.out,
                    "config_hash": cfg.config_hash()},
        }, indent=1, default=str)


class _Options:
    """Typed access to a profile's options; every problem is collected, unknown keys refused."""

    def __init__(self, runner: str, options: dict[str, Any], allowed: tuple[str, ...]):
        self.runner, self.options, self.problems = runner, dict(options), []
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            self.problems.append(f"unknown option(s) {unknown} for runner {runner!r}; allowed: "
                                 f"{sorted(allowed)}")

    def str(self, key: str, required: bool = False, pattern: re.Pattern | None = None,
            hint: str = "") -> str | None:
        value = self.options.get(key)
        if value is None or value == "":
            if required:
                self.problems.append(f"runner {self.runner!r} needs option {key!r} ({hint})")
            return None
        value = str(value)
        if pattern is not None and not pattern.match(value):
            self.problems.append(f"runner {self.runner!r} option {key}={value!r}: expected {hint}")
        return value

    def int(self, key: str, minimum: int = 1) -> int | None:
        value = self.options.get(key)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = minimum - 1
        if number < minimum or str(value).strip() != str(number):
            self.problems.append(f"runner {self.runner!r} option {key}={value!r}: expected an "
                                 f"integer >= {minimum}")
            return None
        return number

    def flag(self, key: str) -> bool:
        value = self.options.get(key, False)
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
        self.problems.append(f"runner {self.runner!r} option {key}={value!r}: expected true/false")
        return False

    def check(self) -> None:
        if self.problems:
            raise ConfigError("invalid runner options: " + "; ".join(self.problems))


def _needs_image(opts: _Options, image: str | None) -> None:
    if not image:
        opts.problems.append(f"runner {opts.runner!r} needs a worker image (--image or `image:` "
                             "in the config; build it from the project's Dockerfile)")


def _needs_shared_out(opts: _Options, cfg: JobConfig, schemes: tuple[str, ...]) -> None:
    if not cfg.out.startswith(schemes) and not opts.flag("shared_filesystem"):
        opts.problems.append(
            f"runner {opts.runner!r} writes from remote workers, but --out {cfg.out!r} is a local "
            f"path: use one of {list(schemes)} (or, for flink/spark on a filesystem every worker "
            "mounts at the same path, set shared_filesystem=true)")


def _local(cfg: JobConfig) -> Submission:
    _Options("local", cfg.runner_options, ()).check()
    mode = "in_memory" if cfg.workers == 1 else "multi_processing"
    flags = ["--runner=FnApiRunner", f"--direct_running_mode={mode}",
             f"--direct_num_workers={cfg.workers}"]
    return Submission("local", flags, None, {"worker_processes": cfg.workers})


def _dask(cfg: JobConfig) -> Submission:
    opts = _Options("dask", cfg.runner_options, ("address", "partition_size"))
    address = opts.str("address", pattern=re.compile(r"^(tcp|tls|inproc|ucx)://.+"),
                       hint="a scheduler address like tcp://host:8786") or cfg.dask_address
    size = opts.int("partition_size") or 1
    opts.check()
    flags = [f"--runner={DASK_RUNNER}", f"--dask_partition_size={size}"]
    if address:
        flags.append(f"--dask_client_address={address}")
    resources = {"dask_scheduler": address or "LocalCluster", "episodes_per_partition": size}
    if not address:
        resources["worker_processes"] = cfg.workers
    return Submission("dask", flags, None, resources, None if address else cfg.workers)


def _dataflow(cfg: JobConfig) -> Submission:
    opts = _Options("dataflow", cfg.runner_options, (
        "project", "region", "temp_location", "staging_location", "machine_type", "num_workers",
        "max_num_workers", "accelerator", "service_account_email", "subnetwork"))
    gs = re.compile(r"^gs://[^/]+")
    project = opts.str("project", True, hint="the GCP project id")
    region = opts.str("region", True, re.compile(r"^[a-z]+-[a-z]+[0-9]$"), "a region like us-central1")
    temp = opts.str("temp_location", True, gs, "a gs:// path")
    staging = opts.str("staging_location", pattern=gs, hint="a gs:// path")
    machine = opts.str("machine_type", pattern=re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$"),
                       hint="a machine type like g2-standard-8")
    accelerator = opts.str("accelerator", pattern=_ACCELERATOR,
                           hint="type:<gpu>;count:<n>[;install-nvidia-driver]")
    num, most = opts.int("num_workers"), opts.int("max_num_workers")
    _needs_image(opts, cfg.image)
    _needs_shared_out(opts, cfg, ("gs://",))
    opts.check()
    flags = ["--runner=DataflowRunner", f"--project={project}", f"--region={region}",
             f"--temp_location={temp}", f"--sdk_container_image={cfg.image}",
             "--sdk_location=container"]
    flags += [f"--{k}={v}" for k, v in (("staging_location", staging), ("machine_type", machine),
                                        ("num_workers", num), ("max_num_workers", most))
              if v is not None]
    for key in ("service_account_email", "subnetwork"):
        if (value := opts.str(key)) is not None:
            flags.append(f"--{key}={value}")
    if accelerator:
        flags.append(f"--resource_hints=accelerator={accelerator}")
    return Submission("dataflow", flags, cfg.image, {
        "machine_type": machine or "Dataflow default", "num_workers": num,
        "max_num_workers": most, "accelerator": accelerator})


def _portable(runner: str, cfg: JobConfig, master_key: str, master: re.Pattern, hint: str,
              extra: tuple[str, ...]) -> tuple[_Options, list[str]]:
    opts = _Options(runner, cfg.runner_options,
                    (master_key, "parallelism", "shared_filesystem", *extra))
    address = opts.str(master_key, True, master, hint)
    _needs_image(opts, cfg.image)
    _needs_shared_out(opts, cfg, _REMOTE_OUT)
    flags = [f"--runner={runner.capitalize()}Runner", f"--{master_key}={address}",
             "--environment_type=DOCKER", f"--environment_config={cfg.image}"]
    if (parallelism := opts.int("parallelism")) is not None:
        flags.append(f"--parallelism={parallelism}")
    return opts, flags


def _flink(cfg: JobConfig) -> Submission:
    opts, flags = _portable("flink", cfg, "flink_master", _HOST_PORT, "host:port of the "
                            "Flink JobManager REST endpoint", ("flink_version",))
    version = opts.str("flink_version", pattern=re.compile(
        "^(" + "|".join(re.escape(v) for v in FLINK_VERSIONS) + ")$"),
        hint=f"one of {list(FLINK_VERSIONS)}")
    opts.check()
    if version:
        flags.append(f"--flink_version={version}")
    return Submission("flink", flags, cfg.image, {"parallelism": opts.int("parallelism")})


def _spark(cfg: JobConfig) -> Submission:
    opts, flags = _portable("spark", cfg, "spark_master_url",
                            re.compile(r"^(spark://[A-Za-z0-9.-]+:[0-9]{1,5}|local(\[[0-9*]+\])?)$"),
                            "spark://host:port of the Spark master", ())
    opts.check()
    return Submission("spark", flags, cfg.image, {"parallelism": opts.int("parallelism")})


PROFILES: dict[str, Callable[[JobConfig], Submission]] = {
    "local": _local, "dask": _dask, "dataflow": _dataflow, "flink": _flink, "spark": _spark,
}


def submission(cfg: JobConfig) -> Submission:
    """The validated submission of `cfg`'s runner profile; raises ConfigError naming every
    problem."""
    return PROFILES[cfg.runner](cfg)
