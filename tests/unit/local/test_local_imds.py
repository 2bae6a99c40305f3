"""The simulated instance's metadata service, as the agent (IMDSv2) reads it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import botocore.session
import pytest

from spottrain.local.imds import InstanceMetadata

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def imds():
    metadata = InstanceMetadata("i-0123456789abcdef0", "g5.xlarge", "us-east-1a").start()
    yield metadata
    metadata.stop()


def _token(imds: InstanceMetadata) -> str:
    request = urllib.request.Request(
        imds.endpoint + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    with _OPENER.open(request, timeout=5) as response:
        return response.read().decode()


def _get(imds: InstanceMetadata, path: str, token: str | None) -> tuple[int, str]:
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    try:
        with _OPENER.open(urllib.request.Request(imds.endpoint + path, headers=headers), timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_given_a_token_then_identity_and_placement_are_served(imds):
    token = _token(imds)

    assert _get(imds, "/latest/meta-data/instance-id", token) == (200, "i-0123456789abcdef0")
    assert _get(imds, "/latest/meta-data/instance-type", token) == (200, "g5.xlarge")
    assert _get(imds, "/latest/meta-data/placement/availability-zone", token) == (200, "us-east-1a")


def test_given_no_token_then_requests_are_refused_as_imdsv2_requires(imds):
    assert _get(imds, "/latest/meta-data/instance-id", None)[0] == 401


def test_given_no_interruption_then_spot_notice_is_404_and_after_one_it_is_the_aws_shape(imds):
    token = _token(imds)
    assert _get(imds, "/latest/meta-data/spot/instance-action", token)[0] == 404

    imds.post_spot_notice(in_seconds=5)

    status, body = _get(imds, "/latest/meta-data/spot/instance-action", token)
    assert status == 200
    notice = json.loads(body)
    assert notice["action"] == "terminate"
    assert notice["time"].endswith("Z")


def test_given_a_role_then_botocore_finds_its_credentials_where_ec2_serves_them(imds, monkeypatch):
    # Given the instance's role and its session credentials (assembled, never a key-shaped literal)
    key = "ASIA" + "EXAMPLE" * 2 + "AB"
    imds.assign_role("InstanceRole", {"AccessKeyId": key, "SecretAccessKey": "s" * 40, "Token": "t" * 40})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    # When an SDK on the instance looks for credentials (the agent's default chain)
    credentials = botocore.session.Session().get_credentials()

    # Then they are the role's, from the instance metadata service
    assert (credentials.method, credentials.access_key, credentials.token) == ("iam-role", key, "t" * 40)
