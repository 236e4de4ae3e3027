"""A real S3-speaking server on 127.0.0.1 for the tests and benchmarks: moto's stand-alone server
(`python -m moto.server`, from the `test` extra) in a subprocess. appf reaches it like any S3
endpoint, through s3fs with AWS_ENDPOINT_URL. Not used by the product code."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Iterator

S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "appf-test", "AWS_SECRET_ACCESS_KEY": "appf-test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(endpoint: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}; is the test "
                               "extra installed (`pip install -e .[test]`)?")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {endpoint} did not answer within {timeout_s} s")


@contextlib.contextmanager
def loopback_s3(timeout_s: float = 60.0) -> Iterator[str]:
    """Run the server; inside, AWS_ENDPOINT_URL and test credentials point at it. Yields the
    endpoint URL; the environment is restored and the server stopped on exit."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    port = endpoint.rsplit(":", 1)[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in (*S3_TEST_ENV, "AWS_ENDPOINT_URL")}
    try:
        _wait_until_up(endpoint, proc, timeout_s)
        os.environ.update(S3_TEST_ENV, AWS_ENDPOINT_URL=endpoint)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def new_bucket(prefix: str = "appf") -> str:
    """Create a fresh bucket on the current endpoint; returns its URL (s3://name)."""
    import s3fs

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"
