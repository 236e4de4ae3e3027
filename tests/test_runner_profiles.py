"""Runner profiles: options validated before anything is submitted, and `--dry-run` prints the
full submission. Dataflow, Flink and Spark job servers are not reachable here: those profiles
are tested by their dry-run output, which must parse as Beam's own options, and their errors."""

from __future__ import annotations

import json

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

import apache_beam.runners.portability.flink_runner  # noqa: F401 - registers FlinkRunnerOptions
import apache_beam.runners.portability.spark_runner  # noqa: F401 - registers SparkRunnerOptions
from apache_beam.runners.dask.dask_runner import DaskOptions
from appf.launch.cli import main
from appf.launch.runner_profiles import submission
from appf.pipelines.config import JobConfig
from appf.schemas import ConfigError

IMAGE = "europe-docker.pkg.dev/proj/appf/worker:0.1.0"
DATAFLOW = ["--runner", "dataflow", "--image", IMAGE, "--out", "gs://bucket/out",
            "--runner-opt", "project=proj", "--runner-opt", "region=us-central1",
            "--runner-opt", "temp_location=gs://bucket/tmp",
            "--runner-opt", "machine_type=g2-standard-8", "--runner-opt", "max_num_workers=20",
            "--runner-opt", "accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]


def dry_run(capsys, *argv: str) -> dict:
    assert main(["reannotate", *argv, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


def beam_parses(flags: list[str]) -> dict:
    """Beam's own parse of the flags; every flag must be one Beam knows."""
    known = PipelineOptions(flags).get_all_options(drop_default=True)
    every = PipelineOptions(flags).get_all_options(drop_default=True, retain_unknown_options=True)
    assert every == known, f"flags Beam does not know: {set(every) - set(known)}"
    return known


def test_dataflow_dry_run_prints_the_full_submission(capsys, tmp_path):
    got = dry_run(capsys, *DATAFLOW)
    assert got["runner"] == "dataflow" and got["image"] == IMAGE
    opts = beam_parses(got["pipeline_options"])
    assert opts["runner"] == "DataflowRunner" and opts["project"] == "proj"
    assert opts["region"] == "us-central1" and opts["temp_location"] == "gs://bucket/tmp"
    assert opts["sdk_container_image"] == IMAGE and opts["sdk_location"] == "container"
    assert opts["max_num_workers"] == 20 and opts["machine_type"] == "g2-standard-8"
    assert opts["resource_hints"] == ["accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert got["resources"]["accelerator"].startswith("type:nvidia-l4")
    assert got["job"]["out"] == "gs://bucket/out" and len(got["job"]["config_hash"]) == 16


def test_flink_and_spark_dry_runs(capsys):
    flink = dry_run(capsys, "--runner", "flink", "--image", IMAGE, "--out", "s3://b/out",
                    "--runner-opt", "flink_master=jobmanager:8081",
                    "--runner-opt", "flink_version=1.19", "--runner-opt", "parallelism=8")
    opts = beam_parses(flink["pipeline_options"])
    assert opts["runner"] == "FlinkRunner" and opts["flink_master"] == "jobmanager:8081"
    assert opts["flink_version"] == "1.19" and opts["parallelism"] == 8
    assert opts["environment_type"] == "DOCKER" and opts["environment_config"] == IMAGE
    spark = dry_run(capsys, "--runner", "spark", "--image", IMAGE, "--out", "/mnt/shared/out",
                    "--runner-opt", "spark_master_url=spark://master:7077",
                    "--runner-opt", "shared_filesystem=true")
    opts = beam_parses(spark["pipeline_options"])
    assert opts["runner"] == "SparkRunner" and opts["spark_master_url"] == "spark://master:7077"
    assert opts["environment_config"] == IMAGE


def test_dry_run_submits_nothing_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "never"
    got = dry_run(capsys, "--runner", "dask", "--workers", "2", "--out", str(out))
    assert got["local_cluster_workers"] == 2 and not out.exists()


def test_runner_profile_from_the_config_file(capsys, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "runner": "flink", "image": IMAGE, "out": "gs://b/o",
        "runner_options": {"flink_master": "jm:8081", "parallelism": 2}}))
    got = dry_run(capsys, "--config", str(path), "--runner-opt", "parallelism=4")
    assert "--flink_master=jm:8081" in got["pipeline_options"]
    assert "--parallelism=4" in got["pipeline_options"]  # the command line wins


@pytest.mark.parametrize("runner, options, image, out, messages", [
    ("dataflow", {}, None, "out", ["needs option 'project'", "needs option 'region'",
                                   "needs option 'temp_location'", "needs a worker image",
                                   "is a local path"]),
    ("dataflow", {"project": "p", "region": "us-central1", "temp_location": "/tmp/x",
                  "max_num_workers": "many", "accelerator": "nvidia-l4", "zone": "a"},
     IMAGE, "gs://b/o", ["temp_location='/tmp/x': expected a gs:// path",
                         "max_num_workers='many': expected an integer >= 1",
                         "accelerator='nvidia-l4': expected type:<gpu>;count:<n>",
                         "unknown option(s) ['zone']"]),
    ("flink", {"flink_master": "http://jm", "flink_version": "1.17"}, IMAGE, "s3://b/o",
     ["flink_master='http://jm': expected host:port", "flink_version='1.17': expected one of"]),
    ("spark", {"spark_master_url": "m:7077", "shared_filesystem": "maybe"}, IMAGE, "/data/out",
     ["spark_master_url='m:7077'", "shared_filesystem='maybe': expected true/false",
      "is a local path"]),
    ("dask", {"address": "localhost:8786", "partition_size": 0}, None, "out",
     ["address='localhost:8786': expected a scheduler address",
      "partition_size=0: expected an integer >= 1"]),
    ("local", {"parallelism": 2}, None, "out", ["unknown option(s) ['parallelism']"]),
])
def test_every_invalid_option_is_named_before_submission(runner, options, image, out, messages):
    cfg = JobConfig.from_dict({"runner": runner, "runner_options": options, "image": image,
                               "out": out})
    with pytest.raises(ConfigError) as err:
        submission(cfg)
    for message in messages:
        assert message in str(err.value)


def test_cli_reports_invalid_options_as_one_line(capsys):
    assert main(["reannotate", "--runner", "flink", "--out", "out", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appf: error: invalid runner options:") and err.count("\n") == 1


def test_dask_options_reach_beam():
    """Keyword options Beam does not know by that name are silently dropped; the profile's
    flags must land in DaskOptions (this once sent every job to a default cluster)."""
    sub = submission(JobConfig.from_dict({"runner": "dask", "dask_address": "tcp://h:8786"}))
    opts = PipelineOptions(sub.flags).view_as(DaskOptions).get_all_options(drop_default=True)
    assert opts["address"] == "tcp://h:8786" and opts["partition_size"] == 1
    assert sub.local_cluster_workers is None
    local = submission(JobConfig.from_dict({"workers": 2}))
    opts = beam_parses(local.flags)
    assert opts["direct_num_workers"] == 2 and opts["direct_running_mode"] == "multi_processing"
