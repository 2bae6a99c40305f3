"""The stack's own bucket: job records and the access logs of the per-job buckets.

Job buckets themselves are created at run time by the create_bucket Lambda (one per job, named
`<prefix>-<exec_name>`), so this unit also owns the naming of that prefix and its IAM ARNs.
"""

from __future__ import annotations

from aws_cdk import Aws, Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from spottrain.contract.layout import ACCESS_LOGS_PREFIX


class JobStorage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, bucket_prefix: str) -> None:
        super().__init__(scope, construct_id)
        # Default keeps names DNS-safe and per account; a token, so it resolves at deploy time.
        self.bucket_prefix = bucket_prefix or Fn.join("-", ["spottrain", Aws.ACCOUNT_ID])
        self.bucket = s3.Bucket(
            self,
            "Records",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        )
        self._accept_job_bucket_access_logs()

    @property
    def job_buckets_arn(self) -> str:
        """Every job bucket of this stack (bucket-level actions)."""
        return f"arn:{Aws.PARTITION}:s3:::{self.bucket_prefix}-*"

    @property
    def job_objects_arn(self) -> str:
        """Every object in every job bucket of this stack (object-level actions)."""
        return f"{self.job_buckets_arn}/*"

    def _accept_job_bucket_access_logs(self) -> None:
        # Server access logging delivers with the logging service principal, limited to this account's job
        # buckets, as https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html
        # documents; create_bucket turns logging on for each job bucket (PutBucketLogging).
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="JobBucketAccessLogs",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{ACCESS_LOGS_PREFIX}*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": self.job_buckets_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
