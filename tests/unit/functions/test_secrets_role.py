"""A job's secrets role: reads exactly the secrets its job names, assumable by that job's current instance alone."""

from __future__ import annotations

import json
import urllib.parse

import boto3
import pytest
from moto import mock_aws

from spot_fixtures import FAKE_CREDENTIALS, job_state, make_settings
from spottrain.functions.shared import secrets_role
from spottrain.local.policy_eval import Decision, Request, evaluate

ACCOUNT = "123456789012"
INSTANCE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/SpotTrainTest-InstanceRole"
INSTANCE_ROLE_ID = "AROA" + "EXAMPLEROLEID00001"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/SpotTrainTest-SecretsBoundary"
SECRETS = {"HF_TOKEN": "/spottrain/hf-token", "DB_PASSWORD": "/spottrain/db/password"}


@pytest.fixture
def iam(monkeypatch):
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("iam", region_name="us-east-1")


def settings(**overrides):
    values = dict(
        instance_role_arn=INSTANCE_ROLE_ARN, instance_role_id=INSTANCE_ROLE_ID, secrets_boundary_arn=BOUNDARY_ARN
    )
    return make_settings(**(values | overrides))


def secret_job(**overrides) -> dict:
    return job_state(secrets=SECRETS, repository_auth={"token_secret": "/spottrain/git-token"}, **overrides)["job"]


def assume_request(instance_id: str, role_arn: str) -> Request:
    return Request(
        "sts:AssumeRole",
        role_arn,
        INSTANCE_ROLE_ARN,
        {"aws:userid": f"{INSTANCE_ROLE_ID}:{instance_id}", "aws:PrincipalArn": INSTANCE_ROLE_ARN},
    )


def test_given_a_job_naming_secrets_then_the_read_policy_names_exactly_those_arns():
    # Given a job with two secrets and a repository token secret
    names = secrets_role.secret_names(secret_job())

    # When its read policy is written for us-east-1
    policy = secrets_role.read_policy(names, "aws", "us-east-1", ACCOUNT)

    # Then SSM parameters are named by ARN and Secrets Manager secrets by name plus AWS's six-character suffix
    ssm, manager = policy["Statement"]
    assert (ssm["Action"], manager["Action"]) == ("ssm:GetParameter", "secretsmanager:GetSecretValue")
    assert ssm["Resource"] == [
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/spottrain/db/password",
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/spottrain/git-token",
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/spottrain/hf-token",
    ]
    assert manager["Resource"] == [
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:/spottrain/db/password-??????",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:/spottrain/git-token-??????",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:/spottrain/hf-token-??????",
    ]
    # And another job's secret under the same prefix is not among them
    other = Request("ssm:GetParameter", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/spottrain/other-job", "r", {})
    assert evaluate(other, [policy]).decision is Decision.IMPLICIT_DENY


def test_given_the_trust_policy_then_only_the_admitted_instances_session_of_the_instance_role_may_assume():
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/spottrain/jobs/SpotTrainTest/job-a"
    # Given a trust policy before the first launch, and after job A's instance was admitted
    before = secrets_role.trust_policy(INSTANCE_ROLE_ARN, INSTANCE_ROLE_ID, None)
    after = secrets_role.trust_policy(INSTANCE_ROLE_ARN, INSTANCE_ROLE_ID, "i-0aaaaaaaaaaaaaaaa")

    # Then no session may assume it before the launch, A's instance may after it, B's instance never
    def decide(trust: dict, instance_id: str) -> Decision:
        return evaluate(assume_request(instance_id, role_arn), [], [trust]).decision

    assert decide(before, "i-0aaaaaaaaaaaaaaaa") is Decision.IMPLICIT_DENY
    assert decide(after, "i-0aaaaaaaaaaaaaaaa") is Decision.ALLOWED
    assert decide(after, "i-0bbbbbbbbbbbbbbbb") is Decision.IMPLICIT_DENY
    assert secrets_role.admitted_instance(after) == "i-0aaaaaaaaaaaaaaaa"
    assert secrets_role.admitted_instance(before) is None


def test_given_runs_of_jobs_in_two_stacks_then_their_role_names_differ_and_fit_iams_limit():
    # Given two runs of each of three jobs (one with the longest exec_name) in each of two stacks of one account
    long_name = "a" * 63
    names = {
        secrets_role.role_name(stack, exec_name, run)
        for stack in ("SpotTrain", "SpotTrainStaging")
        for exec_name in ("job-a", "job-b", long_name)
        for run in ("run-1", "run-2")
    }
    # Then no two share a name (IAM role names are unique per account, whatever the path), and each fits
    assert len(names) == 12 and max(len(name) for name in names) <= secrets_role.ROLE_NAME_MAX


def test_given_a_job_with_secrets_when_its_role_is_created_then_it_has_the_boundary_the_path_and_the_reads(iam):
    # When CreateBucket makes the role for run-1 of a job naming secrets
    arn = secrets_role.create_job_role(iam, settings(), "us-east-1", secret_job(), "run-1")

    # Then it lives under the stack's path with the stack's boundary, trusting no instance yet
    name = secrets_role.role_name("SpotTrainTest", "pix2pix-facades", "run-1")
    role = iam.get_role(RoleName=name)["Role"]
    assert arn == role["Arn"] and role["Path"] == "/spottrain/jobs/SpotTrainTest/"
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY_ARN
    assert secrets_role.admitted_instance(_document(role["AssumeRolePolicyDocument"])) is None
    # And its one inline policy reads exactly the job's names
    policy = _document(iam.get_role_policy(RoleName=name, PolicyName=secrets_role.POLICY_NAME)["PolicyDocument"])
    assert len(policy["Statement"][0]["Resource"]) == 3
    # And a retried CreateBucket reuses it
    assert secrets_role.create_job_role(iam, settings(), "us-east-1", secret_job(), "run-1") == arn


def test_given_a_job_without_secrets_then_no_role_is_made(iam):
    assert secrets_role.create_job_role(iam, settings(), "us-east-1", job_state()["job"], "run-1") is None
    assert iam.list_roles(PathPrefix="/spottrain/")["Roles"] == []


def test_given_no_boundary_in_the_environment_then_creating_a_role_fails_naming_the_variable(iam):
    with pytest.raises(secrets_role.SecretsRoleUnavailable, match="SECRETS_BOUNDARY_ARN"):
        secrets_role.create_job_role(iam, settings(secrets_boundary_arn=""), "us-east-1", secret_job(), "run-1")


def test_given_a_second_launch_when_admitted_then_only_the_new_instance_may_assume(iam):
    arn = secrets_role.create_job_role(iam, settings(), "us-east-1", secret_job(), "run-1")
    secrets_role.admit_instance(iam, settings(), arn, "i-0aaaaaaaaaaaaaaaa")
    secrets_role.admit_instance(iam, settings(), arn, "i-0cccccccccccccccc")

    trust = _document(iam.get_role(RoleName=arn.rsplit("/", 1)[-1])["Role"]["AssumeRolePolicyDocument"])
    assert evaluate(assume_request("i-0cccccccccccccccc", arn), [], [trust]).allowed
    assert not evaluate(assume_request("i-0aaaaaaaaaaaaaaaa", arn), [], [trust]).allowed


def test_given_a_role_when_deleted_twice_then_it_is_gone_and_the_second_delete_is_fine(iam):
    arn = secrets_role.create_job_role(iam, settings(), "us-east-1", secret_job(), "run-1")
    name = arn.rsplit("/", 1)[-1]

    assert secrets_role.delete_job_role(iam, name) is True
    assert secrets_role.delete_job_role(iam, name) is False
    assert iam.list_roles(PathPrefix="/spottrain/")["Roles"] == []


def _document(document) -> dict:
    return json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document
