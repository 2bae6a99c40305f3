"""A job's secrets: names of SSM SecureString parameters or Secrets Manager secrets under the stack's prefix.

The spec maps the commands' environment variables to names (`"secrets": {"HF_TOKEN": "/spottrain/hf-token"}`);
only the names travel (job.json, the execution input); the agent reads the values with the instance role
and hands them to the commands' environment only, masking them in the output it writes. Python 3.8, stdlib.
"""
import re
from typing import Iterable

SECRETS_PREFIX = "/spottrain/"  # the instance role may read SSM parameters and secrets under it, nothing else
# SSM parameter names: letters, digits, . - _ and / for the hierarchy
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html)
SECRET_NAME = re.compile(r"^/spottrain/[A-Za-z0-9_.\-/]{1,200}$")
MASK = b"********"
MIN_MASKED_CHARS = 4  # a shorter value would blank out ordinary text; such a value protects nothing anyway


def mask(line: bytes, values: Iterable[bytes]) -> bytes:
    """The line with every exact occurrence of each value (and of each line of a multi-line value) masked."""
    for value in values:
        for part in [value, *value.splitlines()]:
            if len(part.strip()) >= MIN_MASKED_CHARS:
                line = line.replace(part, MASK)
    return line
