"""The job's secrets, read with the job's secrets role: SSM SecureString parameters, else Secrets Manager secrets.

The instance role reads no secret: the agent assumes the run's own secrets role (job.json's `secrets_role`,
made by CreateBucket and admitting this job's current instance only: spottrain/functions/shared/secrets_role.py)
and reads with its credentials.

Values go to the commands' environment and to the output log's mask, nowhere else: never a log line,
a marker or an error message (those name the variable and the secret's name only).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Mapping, Optional

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

NOT_FOUND = ("ParameterNotFound", "ResourceNotFoundException")


class SecretUnreadable(Exception):
    """A secret the job names cannot be read: the message names the variable, the secret and the fix."""


# IAM is eventually consistent: the trust policy admitting this instance was written seconds before it
# booted, and may not be in force everywhere yet
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency).
ASSUME_ROLE_WAIT_SECONDS = 120.0


def clients(region: "str | None", role_arn: Optional[str] = None, session_name: str = "spottrain-agent") -> tuple:
    """(ssm, secretsmanager) clients; with `role_arn`, signed with that role's credentials (SecretUnreadable
    when it cannot be assumed within ASSUME_ROLE_WAIT_SECONDS)."""
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    session = boto3.session.Session(region_name=region)
    if role_arn:
        credentials = assume(session.client("sts", config=config), role_arn, session_name)
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=region,
        )
    return session.client("ssm", config=config), session.client("secretsmanager", config=config)


def assume(
    sts,
    role_arn: str,
    session_name: str,
    wait_seconds: float = ASSUME_ROLE_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Dict[str, str]:
    """The role's temporary credentials, retrying AccessDenied (a trust policy not yet in force) for `wait_seconds`.

    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    """
    deadline, pause = clock() + wait_seconds, 1.0
    while True:
        try:
            return sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code != "AccessDenied" or clock() + pause > deadline:
                raise SecretUnreadable(
                    f"secrets: assuming the job's secrets role {role_arn} failed with {code} "
                    f"(retried for {wait_seconds:.0f} s). The role admits this job's current instance only; "
                    "if this is that instance, the role was changed or deleted outside spottrain: submit the job again."
                ) from None
        except BotoCoreError as error:
            raise SecretUnreadable(f"secrets: assuming {role_arn} failed: {type(error).__name__}") from None
        sleep(pause)
        pause = min(pause * 2, 15.0)


def read_secrets(names: Mapping[str, str], ssm, secretsmanager) -> Dict[str, str]:
    """{variable: value} for the spec's {variable: secret name}; SecretUnreadable on the first that fails."""
    return {variable: _read(variable, name, ssm, secretsmanager) for variable, name in names.items()}


def _read(variable: str, name: str, ssm, secretsmanager) -> str:
    readers: tuple[Callable[[], str], ...] = (
        # https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html
        lambda: ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"],
        # https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
        lambda: secretsmanager.get_secret_value(SecretId=name)["SecretString"],
    )
    for read in readers:
        try:
            return read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            # The role's policy names the secret's ARN with its random suffix: a secret that does not exist has
            # no such ARN, so Secrets Manager refuses it rather than saying it is not there.
            if code in NOT_FOUND or (read is readers[-1] and code == "AccessDeniedException"):
                continue
            raise SecretUnreadable(
                f"secrets.{variable}: reading {name} failed with {code}. The job's secrets role reads "
                "only the names the job gives, under /spottrain/; check the name and the region."
            ) from None
        except BotoCoreError as error:
            raise SecretUnreadable(f"secrets.{variable}: reading {name} failed: {type(error).__name__}") from None
    raise SecretUnreadable(
        f"secrets.{variable}: {name} is neither an SSM parameter nor a Secrets Manager secret in "
        f"this region. Store it with `spottrain secret put {name}` and submit again."
    )
