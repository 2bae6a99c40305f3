"""A job's secrets: names of SSM SecureString parameters or Secrets Manager secrets under the stack's prefix.

The spec maps the commands' environment variables to names (`"secrets": {"HF_TOKEN": "/spottrain/hf-token"}`);
only the names travel (job.json, the execution input); the agent reads the values with the job's secrets role
and hands them to the commands' environment only, masking them in the output it writes. Python 3.8, stdlib.
"""

import functools
import json
import re
from typing import Iterable, List, Optional, Pattern, Tuple

SECRETS_PREFIX = "/spottrain/"  # a job's secrets role may read the names its job gives under it, nothing else
# SSM parameter names: letters, digits, . - _ and / for the hierarchy
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html)
SECRET_NAME = re.compile(r"^/spottrain/[A-Za-z0-9_.\-/]{1,200}$")
MASK = b"********"
# job.json's top-level field naming the run's secrets role (functions/shared/secrets_role.py), which the
# agent assumes to read the job's secrets: the instance role itself reads none.
SECRETS_ROLE_FIELD = "secrets_role"


def job_roles_path(stack_name: str) -> str:
    """The IAM path of a stack's job secrets roles: per stack, so a stack's grants reach its own jobs' roles only."""
    return SECRETS_PREFIX + "jobs/" + stack_name + "/"


def name_path_problem(name: str) -> "str | None":
    """Why a name matching SECRET_NAME is still no usable hierarchy path (SSM refuses empty levels, and
    `..` would look like leaving the prefix the instance role is scoped to), or None."""
    rest = name[len(SECRETS_PREFIX) :]
    if ".." in rest.split("/"):
        return "has a '..' level"
    if "//" in name:
        return "has an empty level ('//')"
    if name.endswith("/"):
        return "ends with '/'"
    return None


def name_form_problem(name: str) -> "str | None":
    """Which rule of SECRET_NAME a name breaks, or None when it matches: the message then names the rule."""
    if not name.startswith(SECRETS_PREFIX):
        return "is not under '" + SECRETS_PREFIX + "'"
    rest = name[len(SECRETS_PREFIX) :]
    if not rest:
        return "names nothing after '" + SECRETS_PREFIX + "'"
    bad = next((char for char in rest if not re.match(r"[A-Za-z0-9_.\-/]", char)), None)
    if bad is not None:
        return "has a character a name may not hold: " + json.dumps(bad).replace('"', "'")
    if not SECRET_NAME.match(name):
        return "is longer than " + str(len(SECRETS_PREFIX) + 200) + " characters"
    return None


MIN_MASKED_CHARS = 4  # a shorter value would blank out ordinary text; such a value protects nothing anyway


def mask(line: bytes, values: Iterable[bytes]) -> bytes:
    """The line with each value masked, as written and in the encodings command output commonly carries.

    line: one output line (bytes, its newline kept); values: the secrets' values (UTF-8 bytes). Each value and
    each line of a multi-line value is masked when it has MIN_MASKED_CHARS or more non-blank characters,
    exactly and as `bash -x` / `printf '%q'` quote it (single quotes, backslashes, `$'...'`), as JSON
    escapes it and as Python's repr shows it (of str and of bytes).
    """
    pattern = _mask_pattern(tuple(values))
    return pattern.sub(MASK, line) if pattern is not None else line


@functools.lru_cache(maxsize=8)  # the agent masks every output line with the same few values
def _mask_pattern(values: Tuple[bytes, ...]) -> Optional[Pattern[bytes]]:
    parts = {
        part
        for value in values
        for part in [value, *value.splitlines()]
        if b"\n" not in part and b"\r" not in part and len(part.strip()) >= MIN_MASKED_CHARS
    }
    literals = {encoded for part in parts for encoded in _encodings(part)}
    # A backslash may precede any character (printf '%q', shell escaping): one pattern per part covers them all
    backslashed = [b"".join(b"\\\\?" + re.escape(bytes([byte])) for byte in part) for part in parts]
    alternatives = backslashed + [re.escape(encoded) for encoded in sorted(literals, key=len, reverse=True)]
    return re.compile(b"|".join(alternatives)) if alternatives else None


def _encodings(part: bytes) -> List[bytes]:
    """The part as it appears inside the quotes of bash's, JSON's and Python's quoting (one line, no newline)."""
    text = part.decode("utf-8", "surrogateescape")
    encoded = [
        text.replace("'", "'\\''"),  # bash -x and '...' quoting: a quote closes, is escaped, and reopens
        _ansi_c(text),  # bash's $'...' form, used for values with control characters
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text)[1:-1],
    ]
    return [part, repr(part)[2:-1].encode()] + [item.encode("utf-8", "surrogateescape") for item in encoded]


_ANSI_C = {
    "\a": "\\a",
    "\b": "\\b",
    "\x1b": "\\E",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    "'": "\\'",
}


def _ansi_c(text: str) -> str:
    """Inside bash's $'...': its escapes, octal for other control characters (bash's lib/sh/strtrans.c)."""
    return "".join(
        _ANSI_C.get(char) or (char if char.isprintable() or ord(char) > 127 else "\\%03o" % ord(char)) for char in text
    )
