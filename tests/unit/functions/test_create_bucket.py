"""CreateBucket: the job bucket is private, encrypted, TLS-only, tagged, reusable, and never someone else's."""

from __future__ import annotations

import json
import urllib.parse

import boto3
import pytest
from botocore.exceptions import ClientError

from jobstate_support import ORIGINAL_2017_SPEC
from jobstate_support import FakeLambdaContext, STACK, aws, job_state, lambda_env, make_settings, requests_use_tls  # noqa: F401
from spottrain.functions import create_bucket
from spottrain.functions.shared.bucket_policy import admit_instance, allowed_instances
from spottrain.contract import layout
from spottrain.contract.status import ErrorName, TransientError

BUCKET = "spottrain-123456789012-pix2pix-facade"


def test_given_new_job_when_handler_runs_then_bucket_is_locked_down_and_holds_job_json(lambda_env):
    state = job_state()

    storage = create_bucket.handler(state, FakeLambdaContext())

    assert storage == {"bucket": BUCKET, "job_key": "job.json", "secrets_role": None}
    s3 = boto3.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
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
    for key in (
        "status/completed.json",
        "status/heartbeat.json",
        "report.json",
        "output/model.npz",
        "checkpoints/snap_100",
    ):
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


@pytest.mark.parametrize("head_answer", ["403", "404"])
def test_given_name_owned_by_another_account_when_creating_then_bucket_name_taken_with_fix(
    aws, monkeypatch, head_answer
):
    # Given a bucket of the job's name in another account. AWS answers HeadBucket for it with 403 (moto,
    # which shares one bucket namespace without access checks, with 200): "403" is what AWS says, "404"
    # the bucket appearing between HeadBucket and CreateBucket, which then answers BucketAlreadyExists.
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "111111111111")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    s3 = boto3.client("s3")

    def head_bucket(**_):
        raise ClientError(
            {"Error": {"Code": head_answer, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": int(head_answer)}},
            "HeadBucket",
        )

    monkeypatch.setattr(s3, "head_bucket", head_bucket)

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

    with pytest.raises(create_bucket.BucketNameTaken, match='spottrain stack "other-stack"'):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())

    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["status/completed.json"]


def test_given_s3_throttles_when_creating_then_transient_error_for_the_workflow_retry(aws, monkeypatch):
    s3 = boto3.client("s3")

    def slow_down(**_):
        raise ClientError(
            {
                "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            },
            "CreateBucket",
        )

    monkeypatch.setattr(s3, "create_bucket", slow_down)
    with pytest.raises(TransientError, match="SlowDown"):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())


def test_given_access_denied_when_creating_then_error_is_not_retried_as_transient(aws, monkeypatch):
    s3 = boto3.client("s3")

    def denied(**_):
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "CreateBucket",
        )

    monkeypatch.setattr(s3, "create_bucket", denied)
    with pytest.raises(ClientError) as caught:
        create_bucket.create_job_bucket(s3, make_settings(), job_state())
    assert not isinstance(caught.value, TransientError)


def _bucket_as_left(s3) -> dict:
    """Everything a user would notice changed: tags, policy and objects."""
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    objects = {
        o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    }
    return {"tags": tags, "policy": s3.get_bucket_policy(Bucket=BUCKET)["Policy"], "objects": objects}


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])  # us-east-1 answers CreateBucket 200 for an owned bucket
def test_given_a_bucket_of_that_name_not_made_by_spottrain_when_creating_then_taken_and_nothing_changed(aws, region):
    # Given a bucket of the job's name in this account, with its owner's own tags, policy and data
    s3 = boto3.client("s3", region_name=region)
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=BUCKET, **location)
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "vision"}]})
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{BUCKET}/*",
                    }
                ],
            }
        ),
    )
    for key in ("job.json", "status/completed.json", "data/train.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"theirs")
    before = _bucket_as_left(s3)

    # When the job's bucket is created
    with pytest.raises(create_bucket.BucketNameTaken) as caught:
        create_bucket.create_job_bucket(s3, make_settings(), job_state())

    # Then it fails with BucketNameTaken naming the missing tags and the fix, and the bucket is as it was
    message = str(caught.value)
    assert f'job.bucket: "{BUCKET}" already exists in this account but is not this job\'s' in message
    assert f"{layout.TAG_JOB}=pix2pix-facade" in message and "Choose another exec_name" in message
    assert _bucket_as_left(s3) == before


def test_given_a_bucket_of_that_name_without_any_tags_when_creating_then_taken(aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)

    with pytest.raises(create_bucket.BucketNameTaken, match="lacks the tags"):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())

    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    with pytest.raises(ClientError, match="NoSuchTagSet"):  # still untagged
        s3.get_bucket_tagging(Bucket=BUCKET)


RECORDS = "spottrain-records-bucket"


def _records_bucket_accepting_access_logs(s3) -> None:
    # As the stack's records bucket: the logging service may write under access-logs/ for our job buckets
    s3.create_bucket(Bucket=RECORDS)
    s3.put_bucket_policy(
        Bucket=RECORDS,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "logging.s3.amazonaws.com"},
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{RECORDS}/{layout.ACCESS_LOGS_PREFIX}*",
                        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::spottrain-123456789012-*"}},
                    }
                ],
            }
        ),
    )


def test_given_the_stacks_records_bucket_when_creating_then_access_logs_go_there_partitioned_per_bucket(aws):
    # Given the records bucket the stack names in RECORDS_BUCKET
    s3 = boto3.client("s3")
    _records_bucket_accepting_access_logs(s3)
    sent = []
    s3.meta.events.register("provide-client-params.s3.PutBucketLogging", lambda params, **_: sent.append(params))

    # When the job bucket is created
    create_bucket.create_job_bucket(s3, make_settings(records_bucket=RECORDS), job_state())

    # Then S3 server access logging is on, into access-logs/ of the records bucket, partitioned by source bucket
    logging = s3.get_bucket_logging(Bucket=BUCKET)["LoggingEnabled"]
    assert logging["TargetBucket"] == RECORDS and logging["TargetPrefix"] == layout.ACCESS_LOGS_PREFIX
    (params,) = sent
    assert params["BucketLoggingStatus"]["LoggingEnabled"]["TargetObjectKeyFormat"] == {
        "PartitionedPrefix": {"PartitionDateSource": "EventTime"}
    }


def test_given_a_rerun_when_creating_then_the_earlier_runs_instances_lose_the_bucket(aws):
    # Given a bucket whose last run admitted its instance
    s3 = boto3.client("s3")
    settings = make_settings(
        instance_role_arn="arn:aws:iam::123456789012:role/instance", instance_role_id="AROAEXAMPLE"
    )
    create_bucket.create_job_bucket(s3, settings, job_state())
    admit_instance(s3, BUCKET, settings.instance_role_arn, settings.instance_role_id, "i-0earlier")

    # When the job runs again
    create_bucket.create_job_bucket(s3, settings, job_state())

    # Then the policy admits no instance until this run launches one, and still denies the role job.json writes
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert allowed_instances(policy) == []
    records = next(s for s in policy["Statement"] if s["Sid"] == "DenyInstancesWritingWorkflowRecords")
    assert records["Condition"] == {"ArnEquals": {"aws:PrincipalArn": settings.instance_role_arn}}
    assert f"arn:aws:s3:::{BUCKET}/job.json" in records["Resource"]


SECRETS_SETTINGS = dict(
    instance_role_arn="arn:aws:iam::123456789012:role/spottrain-test-InstanceRole",
    instance_role_id="AROA" + "EXAMPLEROLEID00001",
    secrets_boundary_arn="arn:aws:iam::123456789012:policy/spottrain-test-SecretsBoundary",
)
SECRET_SPEC = {
    **ORIGINAL_2017_SPEC,
    "secrets": {"HF_TOKEN": "/spottrain/hf-token"},
    "repository_auth": {"token_secret": "/spottrain/git-token"},
}


def test_given_a_job_naming_secrets_when_creating_then_job_json_names_its_own_secrets_role(aws):
    # Given a job naming a secret and a repository token secret
    s3, iam = boto3.client("s3"), boto3.client("iam")
    settings = make_settings(**SECRETS_SETTINGS)

    # When CreateBucket runs
    storage = create_bucket.create_job_bucket(s3, settings, job_state(SECRET_SPEC, settings), iam)

    # Then the run's role exists, job.json and $.storage name it, and it reads exactly those two names
    written = json.loads(s3.get_object(Bucket=BUCKET, Key="job.json")["Body"].read())
    role = iam.get_role(RoleName=storage["secrets_role"].rsplit("/", 1)[-1])["Role"]
    assert written["secrets_role"] == storage["secrets_role"] == role["Arn"]
    assert role["Path"] == f"/spottrain/jobs/{STACK}/"
    policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="ReadThisJobsSecrets")["PolicyDocument"]
    policy = json.loads(urllib.parse.unquote(policy)) if isinstance(policy, str) else policy
    assert [arn.rsplit(":", 1)[-1] for arn in policy["Statement"][0]["Resource"]] == [
        "parameter/spottrain/git-token",
        "parameter/spottrain/hf-token",
    ]


def test_given_job_json_cannot_be_written_when_creating_then_the_secrets_role_is_deleted_again(aws, monkeypatch):
    # Given a job naming secrets, and an S3 that refuses job.json (CreateBucket's Catch then ends the job)
    s3, iam = boto3.client("s3"), boto3.client("iam")
    settings = make_settings(**SECRETS_SETTINGS)
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    monkeypatch.setattr(s3, "put_object", lambda **_: (_ for _ in ()).throw(refused))

    # When CreateBucket runs, then it fails, leaving no role behind
    with pytest.raises(ClientError):
        create_bucket.create_job_bucket(s3, settings, job_state(SECRET_SPEC, settings), iam)
    assert iam.list_roles(PathPrefix="/spottrain/")["Roles"] == []


def _plant_after(s3, operation: str, key: str) -> None:
    """An attacker's write into the bucket right after `operation` returns (every stack instance's role may write
    `<prefix>-*/*`; only the bucket's policy keeps other jobs' instances out, and it does not exist yet)."""

    def plant(**kwargs) -> None:
        s3.meta.events.unregister(f"after-call.s3.{operation}", plant)
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"attacker's checkpoint")

    s3.meta.events.register(f"after-call.s3.{operation}", plant)


def test_given_an_object_written_before_the_new_buckets_policy_when_creating_then_it_is_gone(aws):
    # Given another job's instance writing a checkpoint into the new bucket before its policy is in place
    s3 = boto3.client("s3")
    _plant_after(s3, "CreateBucket", "checkpoints/snap_100")

    # When CreateBucket makes the bucket
    create_bucket.create_job_bucket(s3, make_settings(), job_state())

    # Then the bucket holds only what CreateBucket wrote: the job would have restored the planted checkpoint
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["job.json"]


def test_given_a_retry_after_a_failure_before_the_policy_when_creating_then_what_was_written_meanwhile_is_gone(
    aws, monkeypatch
):
    # Given a CreateBucket that made and tagged the bucket, then failed before writing its policy
    s3 = boto3.client("s3")
    real_put_policy = s3.put_bucket_policy

    def fail(**kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutBucketPolicy")

    monkeypatch.setattr(s3, "put_bucket_policy", fail)
    with pytest.raises(Exception):
        create_bucket.create_job_bucket(s3, make_settings(), job_state())
    monkeypatch.setattr(s3, "put_bucket_policy", real_put_policy)
    # And another job's instance wrote into it meanwhile
    s3.put_object(Bucket=BUCKET, Key="output/model.npz", Body=b"forged result")

    # When the workflow retries CreateBucket
    create_bucket.create_job_bucket(s3, make_settings(), job_state())

    # Then nothing written while the bucket had no policy is left
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["job.json"]
