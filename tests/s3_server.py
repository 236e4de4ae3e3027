"""pytest fixtures for a real S3-speaking server on loopback (appf.storage.loopback_s3: moto's
stand-alone server in a subprocess, started once per session)."""

from __future__ import annotations

import pytest

from appf.storage.loopback_s3 import loopback_s3, new_bucket


@pytest.fixture(scope="session")
def s3_endpoint():
    with loopback_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket; its URL (s3://name)."""
    return new_bucket()
