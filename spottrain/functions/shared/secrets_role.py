"""A job's secrets role: the one identity that may read the secrets this job names, assumable by its instance only.

Every job's instance shares the stack's instance role, so that role must not read secrets itself: job A's
instance would read job B's token. Instead CreateBucket creates, for a job that names secrets (`secrets`,
`repository_auth.*_secret`), a role of its own under `/spottrain/jobs/<stack>/` whose inline policy reads
exactly those names, bounded by the stack's permissions boundary (a managed policy allowing nothing beyond
reading `/spottrain/*` secrets: the Lambdas may create roles only with it,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#ck_PermissionsBoundary).
A role's effective permissions are the intersection of its identity policies and its boundary
(https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html).

Its trust policy admits the instance role's session on this job's current instance only: `aws:userid` is
`<role-id>:<instance-id>` for a role assigned to an EC2 instance
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#principaltable), the same
key the job bucket's policy uses (shared/bucket_policy.py). A role trust policy must explicitly allow the
caller, whatever the caller's own policies say
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html). RequestSpotInstance
replaces the admitted instance with each launch: the agent reads its secrets once, when it starts, so an
earlier attempt's instance (still syncing, or a failed bid's) has no further need of the role.
TerminateInstance deletes the role when the execution ends, on every path.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.contract.secrets import job_roles_path
from spottrain.contract.settings import Settings
from spottrain.functions.shared.awserrors import error_code
from spottrain.functions.shared.bucket_policy import instance_session

TRUST_SID = "ThisJobsInstanceOnly"
POLICY_NAME = "ReadThisJobsSecrets"
ROLE_NAME_MAX = 64  # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
NO_INSTANCE = "none"  # before the first launch: a session no instance can have


class SecretsRoleUnavailable(RuntimeError):
    """The stack cannot make a job's secrets role: its environment lacks the boundary to create it with."""


def role_name(stack_name: str, exec_name: str, execution_name: str) -> str:
    """Unique per run: exec_name (readable, cut short) and a digest of the stack, the job and its execution's name.

    Role names are unique per account whatever their path, so the stack is in the digest: two stacks' runs
    of a job never share a role, nor do concurrent jobs or reruns (execution names are unique within a state
    machine). At most 46 characters (IAM allows 64).
    """
    digest = hashlib.sha256(f"{stack_name}/{exec_name}/{execution_name}".encode()).hexdigest()[:16]
    return f"{exec_name[:29]}-{digest}"


def secret_names(job: Mapping[str, Any]) -> list[str]:
    """Every secret name the job names: its `secrets` values and `repository_auth`'s `*_secret` fields."""
    auth = job.get("repository_auth") or {}
    names = [*(job.get("secrets") or {}).values(), *(v for k, v in auth.items() if k.endswith("_secret") and v)]
    return sorted(set(names))


def read_policy(names: Iterable[str], partition: str, region: str, account: str) -> dict:
    """Reads of exactly these names: SSM parameters by ARN; Secrets Manager secrets by name plus the
    six random characters AWS appends to a secret's ARN
    (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html)."""
    names = sorted(names)
    # SecureStrings under the AWS managed key aws/ssm need no kms:Decrypt grant; a customer managed key would
    # (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadJobParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": [f"arn:{partition}:ssm:{region}:{account}:parameter{name}" for name in names],
            },
            {
                "Sid": "ReadJobSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": [
                    f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????" for name in names
                ],
            },
        ],
    }


def trust_policy(instance_role_arn: str, instance_role_id: str, instance_id: str | None) -> dict:
    """The instance role may assume this role from `instance_id` only (from none before the first launch)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": TRUST_SID,
                "Effect": "Allow",
                "Principal": {"AWS": instance_role_arn},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:userid": instance_session(instance_role_id, instance_id or NO_INSTANCE)}
                },
            }
        ],
    }


def admitted_instance(trust: Mapping[str, Any]) -> str | None:
    """The instance id a trust policy written by this module admits (None before the first launch)."""
    for statement in trust.get("Statement", []):
        if statement.get("Sid") == TRUST_SID:
            instance = statement["Condition"]["StringEquals"]["aws:userid"].split(":", 1)[1]
            return None if instance == NO_INSTANCE else instance
    return None


def create_job_role(
    iam: Any, settings: Settings, region: str, job: Mapping[str, Any], execution_name: str
) -> str | None:
    """Create the run's secrets role (none for a job naming no secrets); returns its ARN or None.

    Idempotent for a retried CreateBucket: an existing role of that name gets its policies rewritten.
    Raises SecretsRoleUnavailable when the stack set no boundary; a role left half made is deleted.
    """
    names = secret_names(job)
    if not names:
        return None
    if not settings.secrets_boundary_arn:
        raise SecretsRoleUnavailable(
            "SECRETS_BOUNDARY_ARN is not set: the stack deploys the boundary every job's secrets role is created with"
        )
    name = role_name(settings.stack_name, job["exec_name"], execution_name)
    partition, account = _partition_and_account(settings.instance_role_arn)
    try:
        arn = _create_or_reuse(iam, settings, name, job["exec_name"], execution_name)
        iam.put_role_policy(
            RoleName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=json.dumps(read_policy(names, partition, region, account)),
        )
    except Exception:
        delete_job_role(iam, name)
        raise
    return arn


def _create_or_reuse(iam: Any, settings: Settings, name: str, exec_name: str, execution_name: str) -> str:
    trust = json.dumps(trust_policy(settings.instance_role_arn, settings.instance_role_id, None))
    try:
        return iam.create_role(
            Path=job_roles_path(settings.stack_name),
            RoleName=name,
            AssumeRolePolicyDocument=trust,
            PermissionsBoundary=settings.secrets_boundary_arn,
            MaxSessionDuration=3600,
            Description=f"spottrain: reads the secrets job {exec_name} names, for its instance only"[:1000],
            Tags=[
                {"Key": layout.TAG_STACK, "Value": settings.stack_name},
                {"Key": layout.TAG_JOB, "Value": exec_name},
                {"Key": layout.TAG_EXECUTION, "Value": execution_name},
            ],
        )["Role"]["Arn"]
    except ClientError as exc:
        if error_code(exc) != "EntityAlreadyExists":
            raise
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
    return iam.get_role(RoleName=name)["Role"]["Arn"]


def admit_instance(iam: Any, settings: Settings, role_arn: str, instance_id: str) -> None:
    """Let the new instance (and no earlier one) assume the job's secrets role. Called right after RunInstances."""
    trust = trust_policy(settings.instance_role_arn, settings.instance_role_id, instance_id)
    iam.update_assume_role_policy(RoleName=role_arn.rsplit("/", 1)[-1], PolicyDocument=json.dumps(trust))


def delete_job_role(iam: Any, name: str) -> bool:
    """Delete the role and its inline policies; False when it was already gone (a second caller, no secrets)."""
    try:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise
    return True


def _partition_and_account(role_arn: str) -> tuple[str, str]:
    parts = role_arn.split(":")
    if len(parts) < 5 or not parts[4]:
        raise SecretsRoleUnavailable(f"INSTANCE_ROLE_ARN={role_arn!r} is not a role ARN: the stack sets it")
    return parts[1], parts[4]
