"""CreateBucket: the job bucket is private, encrypted, TLS-only, tagged, reusable, and never someone else's."""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from jobstate_support import FakeLambdaContext, STACK, aws, job_state, lambda_env, make_settings, requests_use_tls  # noqa: F401
from lambdas import create_bucket
from lambdas.shared import layout
from lambdas.shared.status import ErrorName, TransientError

BUCKET = "spottrain-123456789012-pix2pix-facade"


def test_given_new_job_when_handler_runs_then_bucket_is_locked_down_and_holds_job_json(lambda_env):
    state = job_state()

    storage = create_bucket.handler(state, FakeLambdaContext())

    assert storage == {"bucket": BUCKET, "job_key": "job.json"}
    s3 = boto3.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    ownership = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    statement = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags == {layout.TAG_STACK: STACK, layout.TAG_JOB: "pix2pix-facade", layout.TAG_EXECUTION: "run-1"}
    written = json.loads(s3.get_object(Bucket=BUCKET, Key="job.json")["Body"].read())
    assert written == {"job": state["job"], "execution": state["execution"]}


def test_given_region_other_than_us_east_1_when_creating_then_bucket_lives_in_that_region(aws):
    s3 = boto3.client("s3", region_name="eu-west-1")
    create_bucket.create_job_bucket(s3, make_settings(), job_state())
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-west-1"


def test_given_rerun_of_same_job_when_creating_then_stale_markers_go_and_results_stay(aws):
    s3 = boto3.client("s3")
    create_bucket.create_job_bucket(s3, make_settings(), job_state())
    for key in ("status/completed.json", "status/heartbeat.json", "report.json", "output/model.npz", "checkpoints/snap_100"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    rerun = job_state()
    rerun["execution"]["name"] = "run-2"

    storage = create_bucket.create_job_bucket(s3, make_settings(), rerun)

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["checkpoints/snap_100", "job.json", "output/model.npz"]
    assert storage["bucket"] == BUCKET
    assert json.loads(s3.get_object(Bucket=BUCKET, Key="job.json")["Body"].read())["execution"]["name"] == "run-2"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    assert tags[layout.TAG_EXECUTION] == "run-2"


def test_given_name_owned_by_another_account_when_creating_then_bucket_name_taken_with_fix(aws, monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111111111111")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    s3 = boto3.client("s3")

    with pytest.raises(create_bucket.BucketNameTaken) as caught:
        create_bucket.create_job_bucket(s3, make_settings(), job_state())

    assert type(caught.value).__name__ == ErrorName.BUCKET_NAME_TAKEN.value
    assert "another AWS account" in str(caught.value)
    assert "Choose another exec_name" in str(caught.value) and "bucketPrefix" in str(caught.value)


def test_given_bucket_of_another_stack_in_same_account_when_creating_then_taken_and_untouched(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": layout.TAG_STACK, "Value": "other-stack"}]})
    s3.put_object(Bucket=BUCKET, Key="status/completed.json", Body=b"{}")

    with pytest.raises(create_bucket.BucketNameTaken, match="spottrain stack \"other-stack\""):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())

    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["status/completed.json"]


def test_given_s3_throttles_when_creating_then_transient_error_for_the_workflow_retry(aws, monkeypatch):
    s3 = boto3.client("s3")

    def slow_down(**_):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, "CreateBucket")

    monkeypatch.setattr(s3, "create_bucket", slow_down)
    with pytest.raises(TransientError, match="SlowDown"):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())


def test_given_access_denied_when_creating_then_error_is_not_retried_as_transient(aws, monkeypatch):
    s3 = boto3.client("s3")

    def denied(**_):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                          "CreateBucket")

    monkeypatch.setattr(s3, "create_bucket", denied)
    with pytest.raises(ClientError) as caught:
        create_bucket.create_job_bucket(s3, make_settings(), job_state())
    assert not isinstance(caught.value, TransientError)
