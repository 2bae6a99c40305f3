"""The job bucket's policy, evaluated as IAM would: only this job's instances get in, and none rewrites job.json."""

from __future__ import annotations

import json

import pytest

from spot_fixtures import BUCKET, aws, clients  # noqa: F401 (fixtures)
from spottrain.functions.shared.bucket_policy import admit_instance, allowed_instances, job_bucket_policy
from spottrain.local.policy_eval import Decision, Request, evaluate

ROLE_ARN = "arn:aws:iam::123456789012:role/SpotTrain-InstanceRole"
ROLE_ID = "AROA" + "EXAMPLEROLEID00001"
OTHER_ROLE_ARN = "arn:aws:iam::123456789012:role/SpotTrain-CreateBucketRole"
# The instance role's identity policy: every job bucket (`<prefix>-*`), as spottrain/infra/instance_launch.py grants
IDENTITY = {
    "Statement": [
        {
            "Sid": "JobObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::spottrain-123456789012-*/*",
        },
        {
            "Sid": "JobBuckets",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::spottrain-123456789012-*",
        },
    ]
}


def instance_request(action: str, key: str | None, instance_id: str, bucket: str = BUCKET) -> Request:
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
    return Request(
        action,
        resource,
        ROLE_ARN,
        {"aws:userid": f"{ROLE_ID}:{instance_id}", "aws:PrincipalArn": ROLE_ARN, "aws:SecureTransport": "true"},
    )


def decide(policy: dict, request: Request) -> Decision:
    return evaluate(request, [IDENTITY], [policy]).decision


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:GetObject", "checkpoints/snapshot_iter_100"),
        ("s3:PutObject", "job.json"),
        ("s3:ListBucket", None),
        ("s3:DeleteObject", "output/model.npz"),
    ],
)
def test_given_job_bs_bucket_when_job_as_instance_calls_it_then_the_bucket_policy_denies(action, key):
    # Given job B's bucket, whose policy admits B's instance only
    policy = job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, ["i-0bbbbbbbbbbbbbbbb"])

    # When job A's instance, with the same role and so the same identity policy, calls it
    verdict = evaluate(instance_request(action, key, "i-0aaaaaaaaaaaaaaaa"), [IDENTITY], [policy])

    # Then the explicit Deny wins over the role's Allow
    assert (verdict.decision, verdict.statement) == (Decision.EXPLICIT_DENY, "DenyInstancesOfOtherJobs")


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:GetObject", "job.json"),
        ("s3:GetObject", "status/attempt-1/task-token.json"),
        ("s3:PutObject", "checkpoints/snapshot_iter_100"),
        ("s3:PutObject", "status/completed.json"),
        ("s3:ListBucket", None),
        ("s3:DeleteObject", "checkpoints/snapshot_iter_50"),
    ],
)
def test_given_its_own_jobs_bucket_when_the_instance_does_its_work_then_allowed(action, key):
    policy = job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, ["i-0first", "i-0second"])

    assert decide(policy, instance_request(action, key, "i-0second")) is Decision.ALLOWED


@pytest.mark.parametrize(
    "action,key",
    [
        ("s3:PutObject", "job.json"),
        ("s3:DeleteObject", "job.json"),
        ("s3:PutObject", "status/attempt-3/task-token.json"),
        ("s3:PutObject", "status/attempt-2/budget.json"),
        ("s3:PutObject", "report.json"),
    ],
)
def test_given_its_own_jobs_bucket_when_the_instance_rewrites_what_decides_what_runs_then_denied(action, key):
    policy = job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, ["i-0own"])

    verdict = evaluate(instance_request(action, key, "i-0own"), [IDENTITY], [policy])

    assert (verdict.decision, verdict.statement) == (Decision.EXPLICIT_DENY, "DenyInstancesWritingWorkflowRecords")


def test_given_the_policy_when_a_lambda_role_writes_job_json_then_no_statement_concerns_it():
    # The workflow's own roles are not the instance role: the Denies are conditioned on aws:PrincipalArn
    policy = job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, [])
    request = Request(
        "s3:PutObject",
        f"arn:aws:s3:::{BUCKET}/job.json",
        OTHER_ROLE_ARN,
        {"aws:userid": "AROAOTHER:create-bucket", "aws:PrincipalArn": OTHER_ROLE_ARN, "aws:SecureTransport": "true"},
    )

    allow_own = {"Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}
    assert evaluate(request, [allow_own], [policy]).decision is Decision.ALLOWED


def test_given_plain_http_when_anyone_calls_then_denied():
    policy = job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, ["i-0own"])
    request = instance_request("s3:GetObject", "job.json", "i-0own")
    plain = Request(request.action, request.resource, ROLE_ARN, {**request.context, "aws:SecureTransport": "false"})

    assert evaluate(plain, [IDENTITY], [policy]).statement == "DenyInsecureTransport"


def test_given_a_fresh_bucket_policy_when_two_attempts_launch_then_both_instances_are_admitted(aws):  # noqa: F811
    # Given the policy CreateBucket writes (no instance yet)
    _, s3 = aws
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(job_bucket_policy(BUCKET, ROLE_ARN, ROLE_ID, [])))
    # When attempt 1 and attempt 2 launch (the first may still be syncing while the second restores)
    admit_instance(s3, BUCKET, ROLE_ARN, ROLE_ID, "i-0first")
    admit_instance(s3, BUCKET, ROLE_ARN, ROLE_ID, "i-0second")
    admit_instance(s3, BUCKET, ROLE_ARN, ROLE_ID, "i-0second")  # a retried Lambda adds nobody twice
    # Then both are in, nobody else
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert allowed_instances(policy) == ["i-0first", "i-0second"]
    assert decide(policy, instance_request("s3:GetObject", "job.json", "i-0first")) is Decision.ALLOWED
    assert decide(policy, instance_request("s3:GetObject", "job.json", "i-0third")) is Decision.EXPLICIT_DENY
