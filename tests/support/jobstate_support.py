"""Fixtures and builders shared by the validate/create_bucket/notify/terminate tests (moto only)."""

from __future__ import annotations

import copy
import dataclasses
import json

import boto3
import pytest
from moto import mock_aws

from spottrain.contract.settings import Settings

REGION = "us-east-1"
STACK = "spottrain-test"
PREFIX = "spottrain-123456789012"

ORIGINAL_2017_SPEC = {
    "exec_name": "pix2pix-facade",
    "repository_url": "https://github.com/pfnet-research/chainer-pix2pix.git",
    "repository_name": "chainer-pix2pix",
    "data_dir": "facade",
    "output_dir": "result",
    "data_get_command": "wget -q http://example.com/facade.zip && unzip facade.zip -d facade",
    "exec_command": "python train_facade.py -g 0 -i ./facade/base --out result",
}

LAMBDA_ENV = {
    "STACK_NAME": STACK,
    "BUCKET_PREFIX": PREFIX,
    "ALLOWED_INSTANCE_TYPES": "g5.xlarge,g6.xlarge,g4dn.xlarge",
    "DEFAULT_INSTANCE_TYPES": "g5.xlarge,g4dn.xlarge",
    "MAX_RUNTIME_MINUTES": "600",
    "MAX_ATTEMPTS": "3",
    "MAX_KEEP_ALIVE_MINUTES": "30",
    "ON_DEMAND_FALLBACK": "true",
}


@dataclasses.dataclass
class FakeLambdaContext:
    function_name: str = "spottrain-test-fn"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:spottrain-test-fn"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


def make_settings(**overrides) -> Settings:
    base = dict(
        stack_name=STACK,
        bucket_prefix=PREFIX,
        allowed_instance_types=("g5.xlarge", "g6.xlarge", "g4dn.xlarge"),
        default_instance_types=("g5.xlarge", "g4dn.xlarge"),
        max_runtime_minutes=600,
        max_attempts=3,
        max_keep_alive_minutes=30,
    )
    return Settings(**{**base, **overrides})


@pytest.fixture
def aws(monkeypatch):
    """Fake credentials and one moto account; nothing here can reach AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def lambda_env(aws, monkeypatch):
    """The environment the stack gives every function, with a real topic behind TOPIC_ARN."""
    topic_arn = boto3.client("sns").create_topic(Name="spottrain-test")["TopicArn"]
    for name, value in {**LAMBDA_ENV, "TOPIC_ARN": topic_arn}.items():
        monkeypatch.setenv(name, value)
    _forget_cold_start()
    yield topic_arn
    _forget_cold_start()


def _forget_cold_start() -> None:
    """Each test is a fresh cold start: the settings and clients handlers cache are dropped."""
    from spottrain.functions.shared import runtime

    runtime.settings.cache_clear()
    runtime.client.cache_clear()


def job_state(spec: dict | None = None, settings: Settings | None = None) -> dict:
    """The state object as ValidateJob builds it."""
    from spottrain.contract.jobspec import validate_spec

    job = validate_spec(copy.deepcopy(spec or ORIGINAL_2017_SPEC), settings or make_settings())
    return {
        "job": job,
        "execution": {
            "id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
            "name": "run-1",
            "started_at": "2026-01-01T00:00:00+00:00",
        },
    }


def subscribe_queue(topic_arn: str) -> str:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def received(queue_url: str) -> list[dict]:
    """Every SNS notification delivered to the queue so far, as {"Subject", "Message"}."""
    sqs = boto3.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        for item in batch:
            messages.append(json.loads(item["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])


@pytest.fixture(autouse=True)
def requests_use_tls(monkeypatch):
    """moto ignores the `Bool` operator, so the job bucket's TLS-only Deny would deny every request; the
    emulator's bridge drops that statement (boto3 talks HTTPS to the mock anyway), and so do these tests."""
    from moto.s3.models import FakeBucket

    from spottrain.local.bridge import bucket_permission

    monkeypatch.setattr(FakeBucket, "get_permission", bucket_permission)
