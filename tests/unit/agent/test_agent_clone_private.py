"""Cloning a private https repository: the token reaches git through its credential helper, and nowhere else."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from agent_support import git
from git_https_server import PrivateGitServer, bare_repository, self_signed_certificate
from spottrain.agent import clone
from spottrain.agent.logs import OutputLog


@pytest.fixture
def private_repo(tmp_path):
    """(server, url, token): a repository only `x-access-token` with the token may fetch."""
    source = tmp_path / "source"
    source.mkdir()
    git("init", "--quiet", "--initial-branch", "main", cwd=source)
    (source / "train.py").write_text("print('private')\n")
    git("add", ".", cwd=source)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "one", cwd=source)
    root = tmp_path / "host"
    root.mkdir()
    bare_repository(root, "private", source)
    token = "ght_" + secrets.token_hex(16)
    certificate, key = self_signed_certificate(tmp_path)
    with PrivateGitServer(root, "x-access-token", token, certificate, key) as server:
        yield server, server.url("private"), token


def _clone(url: str, dest, certificate, credentials):
    output = OutputLog(dest.parent / "logs", 1, 1 << 20)
    output.secret_values = [credentials[1].encode()] if credentials else []
    env = {**os.environ, "GIT_SSL_CAINFO": str(certificate)}
    return clone.clone(
        url, "main", dest, env=env, output=output, should_stop=lambda: None, credentials=credentials
    ), output


def test_given_the_right_token_when_cloning_then_git_gets_it_from_the_helper_and_no_command_line_holds_it(
    private_repo, tmp_path
):
    server, url, token = private_repo
    # Given a process list watched while git runs (what `ps` would show any user on the instance)
    watching = subprocess.Popen(
        ["sh", "-c", "for i in $(seq 30); do ps -eo args; done"], stdout=subprocess.PIPE, text=True
    )

    result, output = _clone(url, tmp_path / "work" / "private", server.certificate, ("x-access-token", token))
    seen = watching.communicate()[0]

    assert result.exit_code == 0 and (tmp_path / "work" / "private" / "train.py").exists()
    assert ("/private.git/info/refs?service=git-upload-pack", 401) in server.requests  # it had to authenticate
    assert token not in seen
    log = b"".join(path.read_bytes() for path in (tmp_path / "work" / "logs").iterdir())
    assert token.encode() not in log and token not in url
    git_config = (tmp_path / "work" / "private" / ".git" / "config").read_text()
    assert token not in git_config and "127.0.0.1" in git_config  # the clone's remote has no credentials in it


def test_given_a_wrong_token_when_cloning_then_git_fails_at_once_saying_authentication_failed(private_repo, tmp_path):
    server, url, _ = private_repo

    result, output = _clone(url, tmp_path / "work" / "private", server.certificate, ("x-access-token", "wrong-token"))

    assert result.exit_code != 0
    assert clone.refused_credentials(clone.failure_line(output.tail())), output.tail()


def test_given_no_credentials_when_cloning_a_private_repository_then_git_does_not_hang_on_a_prompt(
    private_repo, tmp_path
):
    server, url, _ = private_repo

    result, output = _clone(url, tmp_path / "work" / "private", server.certificate, None)

    assert result.exit_code != 0 and not result.stop
