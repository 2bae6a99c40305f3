"""The rules of a spec's `repository_auth`: a token for an https URL, or a deploy key and known_hosts for an ssh one.

jobspec.py registers them with the other rules; every problem reads `<field>: <rule>. <fix>`. The
known_hosts value may come from the spec or from the stack's sshKnownHosts (a job's own value wins).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from spottrain.contract import ssh

TOKEN = "token_secret"
KEY = "ssh_key_secret"
DEFAULT_USERNAME = "x-access-token"  # GitHub's user name for a token
_SSH_EXAMPLE = 'e.g. "git@github.com:owner/repo.git" or "ssh://git@host:2222/owner/repo.git"'


def problems(spec: dict) -> Iterator[str]:
    """The rules that hold for every stack (the stack's sshKnownHosts is `stack_problems`' business)."""
    auth, url = spec.get("repository_auth"), spec.get("repository_url")
    if not isinstance(auth, dict) or not isinstance(url, str):
        return
    remote = ssh.ssh_remote(url)
    if TOKEN in auth and KEY in auth:
        yield (
            f"repository_auth: gives both {TOKEN} and {KEY}; a clone uses one. Keep {TOKEN} for an https "
            f"repository_url, or {KEY} for an ssh one."
        )
    elif TOKEN not in auth and KEY not in auth:
        yield (
            f"repository_auth: names no secret. Give {TOKEN} (a token, for an https repository_url) or "
            f"{KEY} (a deploy key, for an ssh repository_url), or remove repository_auth for a public repository."
        )
    elif TOKEN in auth:
        yield from _token_problems(auth, url, remote)
    else:
        yield from _key_problems(auth, url, remote)


def _token_problems(auth: dict, url: str, remote: Optional[ssh.SshRemote]) -> Iterator[str]:
    if remote:
        yield (
            f"repository_auth.{TOKEN}: a token authenticates https clones, and repository_url is an ssh URL. "
            f'Use the repository\'s https:// URL, or a deploy key: "repository_auth": {{"{KEY}": "/spottrain/<name>"}}.'
        )
    elif not url.startswith("https://"):
        yield (
            f"repository_auth.{TOKEN}: a token authenticates https clones only. Use the repository's https:// URL, "
            "or remove repository_auth for a public repository."
        )
    if "known_hosts" in auth:
        yield "repository_auth.known_hosts: checks an ssh host's key, and a token clones over https. Remove it."


def _key_problems(auth: dict, url: str, remote: Optional[ssh.SshRemote]) -> Iterator[str]:
    if not remote:
        kind = "an https URL" if url.startswith("https://") else "not an ssh URL"
        yield (
            f"repository_auth.{KEY}: a deploy key authenticates ssh clones, and repository_url is {kind}. "
            f"Use the repository's ssh URL ({_SSH_EXAMPLE}), or a token ({TOKEN}) for https."
        )
    if "username" in auth:
        yield (
            "repository_auth.username: goes with a token; an ssh clone's user is in repository_url "
            "(git@host:path). Remove username."
        )
    known_hosts = auth.get("known_hosts")
    if remote and isinstance(known_hosts, str) and known_hosts:
        yield from known_hosts_problems("repository_auth.known_hosts", known_hosts, remote)


def known_hosts_problems(field: str, text: str, remote: ssh.SshRemote) -> Iterator[str]:
    """`text` must be known_hosts lines, one of which vouches for `remote`."""
    fix = f"Give the lines `{remote.keyscan()}` prints, checked against the host's published fingerprints."
    _, found = ssh.parse_known_hosts(text)
    for problem in found:
        yield f"{field}: {problem}, so it is not a known_hosts value. {fix}"
    if not found and not ssh.names_host(text, remote):
        yield (
            f"{field}: names no key for {remote.known_hosts_name}, the host repository_url connects to "
            f"(ssh would refuse it). {fix}"
        )


def stack_problems(spec: dict, stack_known_hosts: str) -> Iterator[str]:
    """A deploy key's host must be vouched for by the spec's known_hosts or else the stack's sshKnownHosts."""
    auth, url = spec.get("repository_auth"), spec.get("repository_url")
    if (
        not isinstance(auth, dict)
        or KEY not in auth
        or TOKEN in auth
        or "known_hosts" in auth
        or not isinstance(url, str)
    ):
        return
    remote = ssh.ssh_remote(url)
    if remote is None:
        return  # problems() says the URL is not ssh
    if not stack_known_hosts.strip():
        yield (
            "repository_auth.known_hosts: is required, as this stack gives no sshKnownHosts: without the host's key "
            f"ssh cannot tell it from an impostor. Add the lines `{remote.keyscan()}` prints (checked against the "
            "host's published fingerprints), or deploy the stack with -c sshKnownHosts='<those lines>'."
        )
    elif not ssh.names_host(stack_known_hosts, remote):
        yield (
            f"repository_auth.known_hosts: this stack's sshKnownHosts names no key for {remote.known_hosts_name}. "
            f"Add the lines `{remote.keyscan()}` prints as known_hosts, or add them to the stack's sshKnownHosts."
        )


def filled(auth: Any, stack_known_hosts: str) -> Any:
    """`repository_auth` as the instance reads it: a token's user name, a deploy key's known_hosts, filled in."""
    if not isinstance(auth, dict):
        return auth
    if TOKEN in auth:
        return {**auth, "username": auth.get("username", DEFAULT_USERNAME)}
    if KEY in auth and "known_hosts" not in auth:
        return {**auth, "known_hosts": stack_known_hosts}
    return auth
