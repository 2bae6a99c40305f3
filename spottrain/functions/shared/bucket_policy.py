"""The job bucket's policy: TLS only, reachable by this job's instances alone, its workflow records read-only to them.

Every job's instance shares one role (the launch template's instance profile), whose identity policy
must name every job bucket (`<prefix>-*`). What tells one job's instance from another's is the role
session: for a role assigned to an EC2 instance, `aws:userid` is `<role-id>:<instance-id>`
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#principaltable),
and `aws:PrincipalArn` is the role's ARN for any of its sessions
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn).
So each job bucket denies the instance role everything unless the session is one of this job's
instances (CreateBucket writes the policy with none; RequestSpotInstance adds each attempt's instance
as soon as RunInstances names it), and denies it, always, writes to what the workflow reads to decide
what runs (job.json, the attempts' task tokens and spend budgets, report.json). An explicit Deny in a bucket policy
wins over the role's Allow (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.functions.shared.awserrors import error_code

OTHER_INSTANCES_SID = "DenyInstancesOfOtherJobs"
RECORDS_SID = "DenyInstancesWritingWorkflowRecords"
# What the workflow reads to decide what runs: the spec, who may answer an attempt's wait, the attempts so far,
# and when an attempt must stop for the spend cap (an instance must not extend its own budget).
WORKFLOW_RECORDS = (
    layout.JOB_KEY,
    layout.REPORT_KEY,
    layout.task_token_key(1).replace("attempt-1", "attempt-*"),
    layout.budget_key(1).replace("attempt-1", "attempt-*"),
)
INSTANCE_WRITES = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectAcl",
    "s3:PutObjectTagging",
    "s3:RestoreObject",
]


def instance_session(role_id: str, instance_id: str) -> str:
    """The `aws:userid` of requests signed with the instance role's credentials on that instance."""
    return f"{role_id}:{instance_id}"


def job_bucket_policy(bucket: str, role_arn: str, role_id: str, instance_ids: list[str]) -> dict:
    """The whole policy for a job whose instances so far are `instance_ids` (none before the first launch)."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    is_instance_role = {"ArnEquals": {"aws:PrincipalArn": role_arn}}
    # With no instance yet, a value no session can have: StringNotLike on an empty list is not valid IAM.
    sessions = [instance_session(role_id, i) for i in instance_ids] or [instance_session(role_id, "none")]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Sid": OTHER_INSTANCES_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {**is_instance_role, "StringNotLike": {"aws:userid": sessions}},
            },
            {
                "Sid": RECORDS_SID,
                "Effect": "Deny",
                "Principal": "*",
                "Action": INSTANCE_WRITES,
                "Resource": [f"{bucket_arn}/{key}" for key in WORKFLOW_RECORDS],
                "Condition": is_instance_role,
            },
        ],
    }


def allowed_instances(policy: dict) -> list[str]:
    """The instance ids a job bucket's policy lets in (none for a policy this module did not write)."""
    for statement in policy.get("Statement", []):
        if statement.get("Sid") == OTHER_INSTANCES_SID:
            sessions = statement["Condition"]["StringNotLike"]["aws:userid"]
            sessions = sessions if isinstance(sessions, list) else [sessions]
            return [session.split(":", 1)[1] for session in sessions if not session.endswith(":none")]
    return []


def admit_instance(s3: Any, bucket: str, role_arn: str, role_id: str, instance_id: str) -> None:
    """Let this job's new instance into its bucket, keeping the earlier attempts' (one may still be syncing).

    Called right after RunInstances: the instance's bootstrap needs tens of seconds before its first
    request to the bucket. Only the workflow writes this policy, one launch at a time, so the
    read-modify-write does not race.
    """
    instances = allowed_instances(_current_policy(s3, bucket))
    if instance_id not in instances:
        instances.append(instance_id)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(job_bucket_policy(bucket, role_arn, role_id, instances)))


def _current_policy(s3: Any, bucket: str) -> dict:
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucketPolicy":
            return {}  # CreateBucket writes one before any launch; without it, this launch's becomes the first
        raise
