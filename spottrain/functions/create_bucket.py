"""CreateBucket: the job's private, encrypted, TLS-only bucket, created idempotently, with job.json in it.

A rerun of the same exec_name reuses its bucket: output/ and checkpoints/ stay (a new run may resume
from them), while the last run's status markers and report go, so they cannot decide or skew this run.
A bucket of that name that spottrain did not create for this job (no `spottrain:job` tag naming it,
or another stack's) is never adopted: its tags, policy and objects stay as they are.

Until its policy is written, a new bucket is open to every instance of the stack: the instance role's own
policy names every job bucket (`<prefix>-*`), and only the bucket's policy keeps other jobs' instances out
(shared/bucket_policy.py). Bucket names are predictable, so another job's instance may write into the bucket
in that moment (a checkpoint the job would restore, a forged output). So once the policy is in place, a bucket
that had none before this call (new, or left half made by a failed call) is emptied of everything but what
CreateBucket itself writes afterwards. Bucket configuration is eventually consistent
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel): the emptying runs
after the policy, and an upload still in flight cannot complete once the policy denies its s3:PutObject
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.contract.secrets import SECRETS_ROLE_FIELD
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared import runtime, secrets_role
from spottrain.functions.shared.bucket_policy import job_bucket_policy
from spottrain.contract.settings import Settings

logger = Logger(service="spottrain")

# Keys a previous run of the same job leaves behind that must not leak into this run.
STALE_PREFIXES = (layout.STATUS_PREFIX, layout.REPORT_KEY)


class BucketNameTaken(Exception):
    """The job's bucket name belongs to another AWS account, another spottrain stack, or no spottrain job."""


def _taken(bucket: str, whose: str) -> BucketNameTaken:
    return BucketNameTaken(
        f'job.bucket: "{bucket}" is already owned by {whose}. '
        "Choose another exec_name, or deploy the stack with another bucketPrefix."
    )


def _create(s3: Any, bucket: str) -> bool:
    """True when this call created the bucket; False when it already existed in this account."""
    region = s3.meta.region_name
    options = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **options)
    except ClientError as exc:
        if error_code(exc) == "BucketAlreadyExists":
            raise _taken(bucket, "another AWS account") from exc
        # BucketAlreadyOwnedByYou: a concurrent or retried call created it first.
        if error_code(exc) != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def _exists(s3: Any, bucket: str) -> bool:
    """Asked first: us-east-1 answers CreateBucket with success for a bucket this account already owns."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            return False
        if error_code(exc) in ("403", "AccessDenied"):
            raise _taken(bucket, "another AWS account") from exc
        raise
    return True


def _tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        tag_set = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except ClientError as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return {}
        raise
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def _claim(s3: Any, settings: Settings, bucket: str, exec_name: str) -> bool:
    """Create the bucket, or make sure the existing one is this job's own; otherwise change nothing.

    True when the bucket had no policy before this call (created now, or left half made by a failed call).
    """
    if not _exists(s3, bucket) and _create(s3, bucket):
        return True
    tags = _tags(s3, bucket)
    if tags.get(layout.TAG_STACK) not in (None, settings.stack_name):
        raise _taken(bucket, f'spottrain stack "{tags[layout.TAG_STACK]}" in this account')
    if tags.get(layout.TAG_JOB) != exec_name or tags.get(layout.TAG_STACK) != settings.stack_name:
        raise BucketNameTaken(
            f'job.bucket: "{bucket}" already exists in this account but is not this job\'s: it lacks the tags '
            f"{layout.TAG_STACK}={settings.stack_name} and {layout.TAG_JOB}={exec_name}, so spottrain left it untouched. "
            "Choose another exec_name, or delete or rename that bucket if you no longer need it."
        )
    return not _has_policy(s3, bucket)


def _has_policy(s3: Any, bucket: str) -> bool:
    try:
        s3.get_bucket_policy(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucketPolicy":
            return False
        raise
    return True


def _empty(s3: Any, bucket: str) -> list[str]:
    """Delete every object: what was written while the bucket had no policy (see the module's docstring)."""
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        chunk = keys[start : start + 1000]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True})
    return keys


def _log_access(s3: Any, bucket: str, records_bucket: str) -> None:
    """S3 server access logs of the job bucket go to the stack's records bucket, partitioned per bucket by S3.

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html; the records
    bucket's policy lets logging.s3.amazonaws.com write under layout.ACCESS_LOGS_PREFIX (infra/job_storage.py).
    """
    s3.put_bucket_logging(
        Bucket=bucket,
        BucketLoggingStatus={
            "LoggingEnabled": {
                "TargetBucket": records_bucket,
                "TargetPrefix": layout.ACCESS_LOGS_PREFIX,
                "TargetObjectKeyFormat": {"PartitionedPrefix": {"PartitionDateSource": "EventTime"}},
            }
        },
    )


def _secure(s3: Any, settings: Settings, bucket: str, tags: dict[str, str]) -> None:
    # Tags first: a retry after a failure further down must recognise the bucket as this job's.
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}],
        },
    )
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    # No instance of this run yet: a rerun's earlier instances lose the bucket here.
    policy = job_bucket_policy(bucket, settings.instance_role_arn, settings.instance_role_id, [])
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _delete_stale(s3: Any, bucket: str) -> list[str]:
    keys = [
        item["Key"]
        for prefix in STALE_PREFIXES
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    if keys:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
    return keys


def claim_bucket(s3: Any, settings: Settings, bucket: str, exec_name: str, execution_name: str) -> None:
    """Create `bucket` for `exec_name` (or adopt it when already this job's), private, encrypted, TLS-only, tagged.

    Raises BucketNameTaken for a bucket of that name that is not this job's. Also what a sweep's own bucket uses.
    A bucket that had no policy before this call is emptied once its policy is in place.
    """
    unguarded = _claim(s3, settings, bucket, exec_name)
    _secure(
        s3,
        settings,
        bucket,
        {
            layout.TAG_STACK: settings.stack_name,
            layout.TAG_JOB: exec_name,
            layout.TAG_EXECUTION: execution_name,
        },
    )
    # Right after the policy (_secure's last step): a failure further on leaves a bucket a retry would not empty.
    if unguarded:
        planted = _empty(s3, bucket)
        if planted:
            logger.warning(
                "objects written before the bucket's policy deleted", extra={"bucket": bucket, "keys": planted}
            )
    if settings.records_bucket:  # the stack always sets it; a Settings built by hand may not
        _log_access(s3, bucket, settings.records_bucket)


def create_job_bucket(s3: Any, settings: Settings, state: dict, iam: Any = None) -> dict:
    """Ensure the job's bucket exists and is locked down, make the run's secrets role (for a job naming
    secrets), then write job.json naming it; returns $.storage (`secrets_role`: the role's ARN or None)."""
    job, execution = state["job"], state["execution"]
    bucket = job["bucket"]
    with transient_errors():
        claim_bucket(s3, settings, bucket, job["exec_name"], execution.get("name") or "")
        stale = _delete_stale(s3, bucket)
        role = secrets_role.create_job_role(iam, settings, s3.meta.region_name, job, execution.get("name") or "")
        try:
            document = {"job": job, "execution": execution, **({SECRETS_ROLE_FIELD: role} if role else {})}
            s3.put_object(
                Bucket=bucket,
                Key=layout.JOB_KEY,
                Body=json.dumps(document, indent=2, sort_keys=True).encode(),
                ContentType="application/json",
            )
        except Exception:
            if role:  # CreateBucket's Catch ends the job without TerminateInstance: nothing else would delete it
                secrets_role.delete_job_role(iam, role.rsplit("/", 1)[-1])
            raise
    logger.info("job bucket ready", extra={"bucket": bucket, "stale_keys_removed": stale, "secrets_role": role})
    return {"bucket": bucket, "job_key": layout.JOB_KEY, "secrets_role": role}


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    return create_job_bucket(runtime.client("s3"), runtime.settings(), event, runtime.client("iam"))
