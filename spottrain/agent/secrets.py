"""The job's secrets, read with the instance role: SSM SecureString parameters, else Secrets Manager secrets.

Values go to the commands' environment and to the output log's mask, nowhere else: never a log line,
a marker or an error message (those name the variable and the secret's name only).
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

NOT_FOUND = ("ParameterNotFound", "ResourceNotFoundException")


class SecretUnreadable(Exception):
    """A secret the job names cannot be read: the message names the variable, the secret and the fix."""


def clients(region: str | None) -> tuple:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    session = boto3.session.Session(region_name=region)
    return session.client("ssm", config=config), session.client("secretsmanager", config=config)


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
            if code in NOT_FOUND:
                continue
            raise SecretUnreadable(
                f"secrets.{variable}: reading {name} failed with {code}. The instance role reads "
                "only names under /spottrain/; check the name and the region."
            ) from None
        except BotoCoreError as error:
            raise SecretUnreadable(f"secrets.{variable}: reading {name} failed: {type(error).__name__}") from None
    raise SecretUnreadable(
        f"secrets.{variable}: {name} is neither an SSM parameter nor a Secrets Manager secret in "
        f"this region. Store it with `spottrain secret put {name}` and submit again."
    )
