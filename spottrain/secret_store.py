"""`spottrain secret put` and `--local-secret`: a job's secret values into SSM Parameter Store, never a file.

Values are stored as SecureString parameters (encrypted with the account's AWS managed key aws/ssm)
under the prefix a job's secrets role may read, /spottrain/
(https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-securestring.html).
"""

from __future__ import annotations

import getpass
from typing import IO, Any, Iterable, Mapping

from spottrain.contract.secrets import SECRETS_PREFIX, name_form_problem, name_path_problem

ENV_NAME_HINT = "letters, digits and '_'"


class SecretUsageError(ValueError):
    """A secret name or a --local-secret item the user must fix; the message says how."""


def check_name(name: str) -> str:
    problem = name_form_problem(name) if name.startswith(SECRETS_PREFIX) else "must be under " + SECRETS_PREFIX
    problem = problem or name_path_problem(name)
    if problem:
        raise SecretUsageError(
            f'secret name "{name}": {problem} (the only prefix job secrets roles may read), with '
            f"letters, digits, '.', '-', '_' and single '/', e.g. {SECRETS_PREFIX}hf-token"
        )
    return name


def put_secret(ssm: Any, name: str, value: str) -> int:
    """Store (or replace) the value; returns the parameter's new version."""
    if not value:
        raise SecretUsageError(f"secret {name}: the value is empty; give it on stdin or at the prompt")
    return ssm.put_parameter(Name=check_name(name), Value=value, Type="SecureString", Overwrite=True)["Version"]


def read_value(name: str, stdin: IO[str]) -> str:
    """The value from a pipe (one trailing newline dropped), or typed at a prompt that does not echo it."""
    if stdin.isatty():
        return getpass.getpass(f"value of {name} (not shown): ")
    value = stdin.read()
    return value[:-1] if value.endswith("\n") else value


def parse_local_secrets(items: Iterable[str], stdin: IO[str]) -> dict[str, str]:
    """--local-secret items (the emulator's SSM is seeded with them): {name: value}.

    NAME=VALUE gives the value on the command line, where the process list shows it; NAME alone reads it
    like `secret put`: at a prompt that does not echo, or from a pipe (then for one NAME only).
    """
    secrets: dict[str, str] = {}
    piped = None  # the NAME that read the pipe
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            if not stdin.isatty():
                if piped is not None:
                    raise SecretUsageError(
                        f"--local-secret {name}: only one NAME can read its value from stdin ({piped} did); "
                        f"give the others as NAME=VALUE, or run at a terminal to be prompted for each"
                    )
                piped = name
            value = read_value(check_name(name), stdin)
            if not value:
                raise SecretUsageError(f"--local-secret {name}: the value is empty; give it on stdin or at the prompt")
        elif not value:
            raise SecretUsageError(
                f"--local-secret {name}=: the value is empty; give it after '=' (quote it for the "
                f'shell, e.g. --local-secret {name}="$HF_TOKEN"), or give NAME alone to type it at a prompt'
            )
        secrets[check_name(name)] = value
    return secrets


def unseeded_problems(spec: Mapping[str, Any], seeded: Iterable[str]) -> list[str]:
    """The spec's secret names that no --local-secret seeds, each naming its field and the fix.

    The emulator's SSM starts empty, so such a job could only fail at start (`secret_unreadable`).
    """
    seeded = set(seeded)
    fields = [(f"secrets.{variable}", name) for variable, name in (spec.get("secrets") or {}).items()]
    auth = spec.get("repository_auth") or {}
    fields += [(f"repository_auth.{key}", name) for key, name in auth.items() if key.endswith("_secret")]
    return [
        f"{field}: {name} is not seeded, and the emulator's SSM holds only what --local-secret gives (the job would "
        f"fail at start). Add --local-secret {name}=VALUE, or --local-secret {name} to type it at a prompt or pipe it"
        for field, name in fields
        if isinstance(name, str) and name not in seeded
    ]
