"""SSH remotes and known_hosts values: one copy of the rules ValidateJob checks and the agent relies on.

Formats, as OpenSSH and git define them:
- git's ssh URLs, `ssh://[user@]host[:port]/path` and scp-like `[user@]host:path` (git-clone(1), "GIT URLS":
  https://git-scm.com/docs/git-clone#_git_urls);
- known_hosts lines, `[@marker] patterns keytype base64-key [comment]`, where a pattern is a host name with
  `*`/`?` wildcards, `!` negation, `[host]:port` for a port other than 22, or a hashed `|1|salt|hmac`
  (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT": https://man.openbsd.org/sshd#SSH_KNOWN_HOSTS_FILE_FORMAT).
Stdlib only and Python 3.8: the agent imports it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
import struct
from typing import List, Optional, Tuple

DEFAULT_PORT = 22
MARKERS = ("@cert-authority", "@revoked")
# PEM private keys (OpenSSH, PKCS#1/#8, EC) and PuTTY's format: never a spec's business.
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-\d")

_SSH_URL = re.compile(r"^ssh://(?:[^@/]+@)?(?P<host>[^:/@]+)(?::(?P<port>\d+))?/")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[A-Za-z0-9.-]+):(?!//)")


@dataclasses.dataclass(frozen=True)
class SshRemote:
    """The host (and port) git's ssh transport connects to for a repository URL."""

    host: str
    port: int = DEFAULT_PORT

    @property
    def known_hosts_name(self) -> str:
        """The name ssh looks up in known_hosts: `host`, or `[host]:port` off port 22 (sshd(8))."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    def keyscan(self) -> str:
        """The command that prints this host's known_hosts lines."""
        return f"ssh-keyscan{'' if self.port == DEFAULT_PORT else f' -p {self.port}'} {self.host}"


def ssh_remote(url: str) -> Optional[SshRemote]:
    """The remote of an `ssh://` or scp-like URL; None for https://, file:// and local paths."""
    found = _SSH_URL.match(url)
    if found:
        return SshRemote(found["host"].lower(), int(found["port"] or DEFAULT_PORT))
    found = None if "://" in url or url.startswith("/") else _SCP_LIKE.match(url)
    return SshRemote(found["host"].lower()) if found else None


@dataclasses.dataclass(frozen=True)
class KnownHost:
    """One known_hosts line: its marker ("" when none), host patterns and key type."""

    marker: str
    patterns: str
    key_type: str

    def names(self, remote: SshRemote) -> bool:
        """Whether ssh would use this line for `remote` (a @revoked line never vouches for a host)."""
        return self.marker != "@revoked" and _patterns_match(self.patterns, remote.known_hosts_name)


def parse_known_hosts(text: str) -> Tuple[List[KnownHost], List[str]]:
    """(entries, problems): each problem reads `line N: <what is wrong>`; blank and `#` lines are skipped."""
    entries: List[KnownHost] = []
    problems: List[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entry, problem = _parse_line(stripped)
        if problem:
            problems.append(f"line {number}: {problem}")
        elif entry:
            entries.append(entry)
    if not entries and not problems:
        problems.append("holds no known_hosts line")
    return entries, problems


def names_host(text: str, remote: SshRemote) -> bool:
    """Whether any well-formed line of `text` vouches for `remote`'s host key."""
    return any(entry.names(remote) for entry in parse_known_hosts(text)[0])


def _parse_line(line: str) -> Tuple[Optional[KnownHost], Optional[str]]:
    fields = line.split()
    marker = ""
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker not in MARKERS:
            return None, f"{marker!r} is not a known_hosts marker (@cert-authority or @revoked)"
    if len(fields) < 3:
        return None, "has fewer than 3 fields (host patterns, key type, base64 key)"
    patterns, key_type, key = fields[:3]
    problem = _key_problem(key_type, key)
    return (None, problem) if problem else (KnownHost(marker, patterns, key_type), None)


def _key_problem(key_type: str, key: str) -> Optional[str]:
    """A public key blob starts with its own type as an SSH string (RFC 4253, section 6.6)."""
    try:
        blob = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return f"the key after {key_type!r} is not base64"
    if len(blob) < 4:
        return f"the key after {key_type!r} is too short to be an SSH public key"
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != key_type.encode():
        return f"the key is not a {key_type!r} public key (is the key type right?)"
    return None


def _patterns_match(patterns: str, name: str) -> bool:
    if patterns.startswith("|1|"):
        return _hashed_match(patterns, name)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _wildcard(pattern[1:] if negated else pattern).fullmatch(name.lower()):
            if negated:
                return False  # a negated match excludes the host whatever else matches
            matched = True
    return matched


def _wildcard(pattern: str) -> "re.Pattern[str]":
    # ssh's own wildcards only: `[` and `]` are literal (`[host]:port`), unlike fnmatch's classes.
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()))


def _hashed_match(field: str, name: str) -> bool:
    """`|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as `ssh-keyscan -H` writes it."""
    parts = field.split("|")
    if len(parts) != 4:
        return False
    try:
        salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
