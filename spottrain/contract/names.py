"""Names derived from a job and the patterns of what must never be shown: one copy of each rule.

The job's bucket, the folder its repository is cloned into (the Lambdas fill `repository_name` into
job.json; the agent derives it the same way from a job.json written without it), the Linux account its
commands run as, and what a credential looks like (refused in a spec, redacted from logs and emails).
"""

from __future__ import annotations

import re

# job-spec.schema.json's repository_name pattern, with ECMA-262's `$` (the end of the value) as `\Z`;
# tests/unit/contract/test_names.py keeps the two equal.
REPOSITORY_NAME = re.compile(r"^(?!\.{1,2}\Z)[A-Za-z0-9._-]+\Z")
REPOSITORY_NAME_RULE = "one folder name of letters, digits, '.', '_' and '-' (not '.' or '..')"
# A Linux account name as useradd accepts it by default; it reaches user data, so nothing a shell could misread.
LINUX_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")

AWS_ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")
# A user, password or token before '@' in a URL: `https://user:token@host/...`.
URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*)://(?P<userinfo>[^/@]*)@")
SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(aws_secret_access_key|aws_session_token|secret_access_key|session_token)(\s*[=:]\s*)\S+"
)


def bucket_name(prefix: str, exec_name: str) -> str:
    """The job's own bucket: `<stack's bucket prefix>-<exec_name>`."""
    return f"{prefix}-{exec_name}"


def repository_name(url: str) -> str:
    """The clone's folder when the spec names none: `https://host/owner/repo.git` or `git@host:owner/repo` → `repo`."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[: -len(".git")] if tail.endswith(".git") else tail


def redact_credentials(text: str) -> str:
    """`text` with URL credentials, AWS access key ids and secret assignments masked, for logs and emails."""
    text = URL_USERINFO.sub(lambda found: f"{found['scheme']}://***@", text)
    text = AWS_ACCESS_KEY_ID.sub(lambda found: found[1] + "*" * 16, text)
    return SECRET_ASSIGNMENT.sub(r"\1\2[redacted]", text)
