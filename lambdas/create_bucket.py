"""CreateBucket: the job's private, encrypted, TLS-only bucket, created idempotently, with job.json in it.

A rerun of the same exec_name reuses its bucket: output/ and checkpoints/ stay (a new run may resume
from them), while the last run's status markers and report go, so they cannot decide or skew this run.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from lambdas.shared import layout
from lambdas.shared.awserrors import error_code, transient_errors
from lambdas.shared import runtime
from lambdas.shared.config import Settings

logger = Logger(service="spottrain")

# Keys a previous run of the same job leaves behind that must not leak into this run.
STALE_PREFIXES = (layout.STATUS_PREFIX, layout.REPORT_KEY)


class BucketNameTaken(Exception):
    """The job's bucket name belongs to another AWS account or another spottrain stack."""


def tls_only_policy(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def _taken(bucket: str, whose: str) -> BucketNameTaken:
    return BucketNameTaken(
        f"job.bucket: \"{bucket}\" is already owned by {whose}. "
        "Choose another exec_name, or deploy the stack with another bucketPrefix."
    )


def _create(s3: Any, bucket: str) -> None:
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


def _owning_stack(s3: Any, bucket: str) -> str | None:
    try:
        tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    except ClientError as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return None
        raise
    return next((tag["Value"] for tag in tags if tag["Key"] == layout.TAG_STACK), None)


def _secure(s3: Any, bucket: str, tags: dict[str, str]) -> None:
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
    })
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}],
    })
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})


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


def create_job_bucket(s3: Any, settings: Settings, state: dict) -> dict:
    """Ensure the job's bucket exists and is locked down, then write job.json; returns $.storage."""
    job, execution = state["job"], state["execution"]
    bucket = job["bucket"]
    with transient_errors():
        _create(s3, bucket)
        # us-east-1 answers CreateBucket with success for a bucket we already own, so both checks always run.
        owner = _owning_stack(s3, bucket)
        if owner not in (None, settings.stack_name):
            raise _taken(bucket, f"spottrain stack \"{owner}\" in this account")
        _secure(s3, bucket, {
            layout.TAG_STACK: settings.stack_name,
            layout.TAG_JOB: job["exec_name"],
            layout.TAG_EXECUTION: execution.get("name") or "",
        })
        stale = _delete_stale(s3, bucket)
        s3.put_object(
            Bucket=bucket,
            Key=layout.JOB_KEY,
            Body=json.dumps({"job": job, "execution": execution}, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )
    logger.info("job bucket ready", extra={"bucket": bucket, "stale_keys_removed": stale})
    return {"bucket": bucket, "job_key": layout.JOB_KEY}


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    return create_job_bucket(runtime.client("s3"), runtime.settings(), event)
