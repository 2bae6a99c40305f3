"""A moto server on loopback for the emulator's pieces; fake credentials so nothing can reach AWS."""

from __future__ import annotations

import os

import boto3
import pytest

from spottrain.local import processes
from spottrain.local.server import REGION, MotoServer


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def moto_endpoint():
    server = MotoServer()
    endpoint = server.start()
    yield endpoint
    server.stop()
    os.environ.pop("MOTO_PORT", None)


@pytest.fixture
def aws(moto_endpoint):
    """client(service) against the moto server."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return lambda service: session.client(service, endpoint_url=moto_endpoint)


@pytest.fixture(params=["cgroup", "environment marker"])
def tracking(request, monkeypatch) -> str:
    """Run the test with each way of tracking an instance's processes (the marker is a non-root user's)."""
    if request.param == "cgroup" and processes._cgroup_parent() is None:
        pytest.skip("no writable cgroup v2 here")
    if request.param == "environment marker":
        monkeypatch.setattr(processes, "_cgroup_parent", lambda: None)
    return request.param
