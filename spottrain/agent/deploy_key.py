"""An ssh clone with a deploy key from a secret: the key reaches ssh only, never the workdir, a command line or a log.

The key goes to ssh as a file, not through ssh-agent: `-i FILE -o IdentitiesOnly=yes` offers exactly this
key (an agent's keys would be offered only when they match an IdentityFile), and there is no daemon to start
and reap. The file is 0600 in a 0700 folder that mkdtemp makes outside the job's workdir (only the agent's
user can list or read it), and the folder is removed as soon as the clone returns, whatever it did.

ssh's options, from ssh(1) and ssh_config(5) (https://man.openbsd.org/ssh_config): `-F /dev/null` skips the
user's and the system's config files; BatchMode never prompts (a passphrase or a new host would hang the
instance); StrictHostKeyChecking=yes refuses a host whose key the known_hosts file lacks or contradicts;
GlobalKnownHostsFile=/dev/null trusts no key the AMI ships, only the job's known_hosts value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from spottrain.contract.ssh import SshRemote, ssh_remote

MASKED_LINE_CHARS = 16  # a key's lines this long are masked one by one too; its BEGIN/END lines are no secret


@dataclasses.dataclass(frozen=True)
class DeployKey:
    secret: str  # the secret's name (repository_auth.ssh_key_secret), for messages
    key: str  # the private key, as the secret holds it
    known_hosts: str  # the job's known_hosts lines (the spec's, else the stack's sshKnownHosts)

    def mask_values(self) -> List[bytes]:
        """What the output log masks: the key, and each of its lines (ssh reads it line by line)."""
        lines = [line.strip() for line in self.key.splitlines()]
        secret_lines = [line for line in lines if len(line) >= MASKED_LINE_CHARS and not line.startswith("-----")]
        return [value.encode() for value in [self.key, *secret_lines]]


def ssh_command(key_file: Path, known_hosts_file: Path) -> str:
    """GIT_SSH_COMMAND's value: git runs it with the shell, so each word is quoted."""
    words = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(key_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts_file}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "UpdateHostKeys=no",
    ]
    return " ".join(shlex.quote(word) for word in words)


@contextlib.contextmanager
def git_ssh_env(deploy_key: Optional[DeployKey]) -> Iterator[Dict[str, str]]:
    """{"GIT_SSH_COMMAND": ...} while the clone runs (nothing without a deploy key); the key file goes after."""
    if deploy_key is None:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="spottrain-ssh-"))
    try:
        key_file, known_hosts_file = folder / "deploy-key", folder / "known_hosts"
        _write_private(key_file, _as_ssh_reads_it(deploy_key.key))
        _write_private(known_hosts_file, deploy_key.known_hosts.strip() + "\n")
        yield {"GIT_SSH_COMMAND": ssh_command(key_file, known_hosts_file)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as_ssh_reads_it(key: str) -> str:
    # `spottrain secret put` drops a piped value's last newline, and ssh reads no key without one ("invalid format")
    text = key.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def refusal(lines: List[str], url: str, deploy_key: DeployKey) -> Optional[str]:
    """The fix for an ssh clone that ssh itself refused (git's own "fatal:" line says only that it could not
    read from the remote), from ssh's words in the clone's output; None when ssh did not refuse."""
    text = "\n".join(lines)
    remote = ssh_remote(url) or SshRemote("the host")
    if "Host key verification failed" in text:
        return (
            f"the host key of {remote.known_hosts_name} does not match known_hosts (repository_auth.known_hosts, "
            "or the stack's sshKnownHosts when the job gives none): check the host's published fingerprints and "
            f"give the lines `{remote.keyscan()}` prints"
        )
    if "Load key" in text:  # ssh could not read the file: not a private key, or one with a passphrase
        return (
            f"the secret {deploy_key.secret} (repository_auth.ssh_key_secret) does not hold a private key ssh can "
            f"read without a passphrase: store the key file with `spottrain secret put {deploy_key.secret} < KEY`"
        )
    if "Permission denied (publickey" in text:
        return (
            f"the server refused the deploy key in {deploy_key.secret} (repository_auth.ssh_key_secret): add its "
            "public key (`ssh-keygen -y -f KEY` prints it) as a deploy key with read access to the repository, or "
            f"store the key it has with `spottrain secret put {deploy_key.secret} < KEY`"
        )
    return None
