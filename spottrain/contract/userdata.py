"""Render the instance's user data: `bootstrap.sh` with the job's bucket, attempt, region, agent asset and
the account the job's commands run as (the AMI's default user, a stack setting).

Imported by the request_spot_instance Lambda and the tests, so stdlib only. User data carries
no spec values and no secrets; the values it does carry are validated here and shell-quoted anyway,
because user data runs as root.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from spottrain.contract.names import LINUX_USER_NAME

USER_DATA_LIMIT = 16384  # EC2's limit on user data, in bytes before base64 encoding
TEMPLATE_PATH = Path(__file__).with_name("bootstrap.sh")

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# S3's rules for new bucket names (no dots: virtual-host TLS breaks on them, and we never create any).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
# CDK asset keys look like "<sha256>.zip", possibly under a prefix; nothing a shell could misread.
_OBJECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,1023}")
PLACEHOLDERS = frozenset({"bucket", "attempt", "region", "agent_bucket", "agent_key", "run_as"})


def render_user_data(*, bucket: str, attempt: int, region: str, agent_bucket: str, agent_key: str, run_as: str) -> str:
    """The bootstrap script for one attempt; ValueError names the first unsafe value and the rule."""
    values = {
        "bucket": _checked("bucket", bucket, _BUCKET, "an S3 bucket name: 3-63 of a-z, 0-9, '-'"),
        "attempt": str(_checked_attempt(attempt)),
        "region": _checked("region", region, _REGION, "an AWS region such as us-east-1"),
        "agent_bucket": _checked("agent_bucket", agent_bucket, _BUCKET, "an S3 bucket name: 3-63 of a-z, 0-9, '-'"),
        "agent_key": _checked_key(agent_key),
        "run_as": _checked(
            "run_as", run_as, LINUX_USER_NAME, "a Linux user name such as ubuntu (the stack's instanceUser)"
        ),
    }
    user_data = _PLACEHOLDER.sub(lambda match: shlex.quote(values[match.group(1)]), _template())
    size = len(user_data.encode())
    if size > USER_DATA_LIMIT:
        raise ValueError(
            f"user data is {size} bytes, over EC2's {USER_DATA_LIMIT}: shorten spottrain/contract/bootstrap.sh"
        )
    return user_data


def _template() -> str:
    text = TEMPLATE_PATH.read_text()
    unknown = set(_PLACEHOLDER.findall(text)) - PLACEHOLDERS
    if unknown:
        raise ValueError(f"{TEMPLATE_PATH.name} uses unknown placeholders {sorted(unknown)}")
    return text


def _checked(field: str, value: object, rule: re.Pattern, meaning: str) -> str:
    if not isinstance(value, str) or not rule.fullmatch(value):
        raise ValueError(f"{field}={value!r} is not {meaning}; fix the stack setting or job that produced it")
    return value


def _checked_attempt(attempt: object) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt={attempt!r} must be an integer >= 1 (1 for the first instance)")
    return attempt


def _checked_key(key: object) -> str:
    meaning = "an S3 key of letters, digits and . _ / - (at most 1024)"
    checked = _checked("agent_key", key, _OBJECT_KEY, meaning)
    if ".." in checked.split("/"):
        raise ValueError(f"agent_key={key!r} must not contain '..' segments")
    return checked
