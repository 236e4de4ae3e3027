"""pytest fixtures for a real S3-speaking server on loopback (appf.storage.loopback_s3: moto's
stand-alone server in a subprocess).

One server per test session, even when several test modules import these fixtures (pytest then
holds one fixture definition per module): a second server would move AWS_ENDPOINT_URL while
fsspec's cached S3 filesystem still points at the first."""

from __future__ import annotations

import pytest

from appf.storage.loopback_s3 import loopback_s3, new_bucket

_RUNNING: dict[str, str] = {}


@pytest.fixture(scope="session")
def s3_endpoint(request):
    if "endpoint" not in _RUNNING:
        server = loopback_s3()
        _RUNNING["endpoint"] = server.__enter__()

        def stop() -> None:
            _RUNNING.clear()
            server.__exit__(None, None, None)
        request.addfinalizer(stop)
    return _RUNNING["endpoint"]


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket; its URL (s3://name)."""
    return new_bucket()
