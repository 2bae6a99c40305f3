"""Shared set-up for the launch / bid / poll handler tests: a moto account with a launch template,
the job's bucket, and the state object as the state machine would hand it over."""

from __future__ import annotations

import copy
import datetime as dt
import json
import types

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from spottrain.contract import layout
from spottrain.contract.settings import Settings
from spottrain.local.bridge import SpotMarket

EXEC_NAME = "pix2pix-facades"
BUCKET = f"spottrain-123456789012-{EXEC_NAME}"
IMAGE_ID = "ami-12c6146b"  # one of moto's built-in AMIs
LAMBDA_CONTEXT = types.SimpleNamespace(
    function_name="spottrain-test",
    memory_limit_in_mb=256,
    aws_request_id="req-1",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:spottrain-test",
)


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def clients():
    """(ec2, s3, ec2 for Stubber), made once: building a client costs about a second, moto resets per test."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        yield boto3.client("ec2"), boto3.client("s3"), boto3.client("ec2")


@pytest.fixture
def aws(clients, monkeypatch):
    """A fresh moto account; yields (ec2, s3) clients with the job bucket created."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    ec2, s3, _ = clients
    # The launch admits its instance to the bucket's policy, whose conditioned Denies moto cannot evaluate:
    # as in the emulator, moto leaves them to the instances' own authorization (spottrain/local/bridge.py, 4).
    from moto.s3.models import FakeBucket

    from spottrain.local.bridge import bucket_permission

    monkeypatch.setattr(FakeBucket, "get_permission", bucket_permission)
    with mock_aws(), SpotMarket():  # moto has no placement scores, and a canned $0.00001/h spot price
        s3.create_bucket(Bucket=BUCKET)
        yield ec2, s3


@pytest.fixture
def stubbed_ec2(aws, clients):
    """An EC2 client answering only what the test scripts (held spot statuses, per-pool errors)."""
    with Stubber(clients[2]) as stubber:
        yield clients[2], stubber
        stubber.assert_no_pending_responses()


def launch_template(ec2) -> str:
    return ec2.create_launch_template(LaunchTemplateName="spottrain-test", LaunchTemplateData={"ImageId": IMAGE_ID})[
        "LaunchTemplate"
    ]["LaunchTemplateId"]


def make_settings(**overrides) -> Settings:
    values = dict(
        stack_name="SpotTrainTest",
        bucket_prefix="spottrain-123456789012",
        launch_template_id="lt-0123456789abcdef0",
        agent_bucket="spottrain-assets",
        agent_key="agent/abc123.zip",
    )
    return Settings(**(values | overrides))


def job_state(**job_overrides) -> dict:
    """The state right after CreateBucket, as validate_job and create_bucket leave it."""
    job = {
        "exec_name": EXEC_NAME,
        "repository_url": "https://github.com/owner/chainer-pix2pix.git",
        "repository_name": "chainer-pix2pix",
        "data_dir": "data",
        "output_dir": "result",
        "data_get_command": "./get_data.sh",
        "exec_command": "python train.py",
        "instance": {"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": False, "volume_gb": 120},
        "limits": {"max_runtime_minutes": 1440, "max_attempts": 3},
        "keep_alive_minutes": 0,
        "env": {},
        "bucket": BUCKET,
    }
    job.update(job_overrides)
    return {
        "job": job,
        "execution": {
            "id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
            "name": "run-1",
            "started_at": "2026-01-01T00:00:00Z",
        },
        "storage": {"bucket": BUCKET, "job_key": layout.JOB_KEY},
    }


def with_launch(state: dict, instance_id: str, attempt: int = 1, **instance_fields) -> dict:
    state = copy.deepcopy(state)
    instance = {
        "instance_id": instance_id,
        "instance_type": "g5.xlarge",
        "subnet_id": "subnet-aaa",
        "az": "us-east-1a",
        "lifecycle": "spot",
        "spot_request_id": None,
        "launched_at": "2026-01-01T00:00:00+00:00",
        "price_per_hour": 0.4,
        "on_demand_price_per_hour": 1.006,
    } | instance_fields
    state["launch"] = {
        "status": "LAUNCHED",
        "attempt": attempt,
        "instance": instance,
        "pools_failed": [],
        "wait_seconds": 15,
    }
    return state


def put_marker(s3, key: str, **body) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())


def read_report(s3) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=layout.REPORT_KEY)["Body"].read())


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()
