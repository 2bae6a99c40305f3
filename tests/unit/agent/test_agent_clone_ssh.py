"""Cloning over ssh with a deploy key from a secret: the key reaches ssh only, and ssh's refusals read as their fix.

The host is tests/support/git_ssh_server.py: asyncssh on loopback, one authorized key, git-upload-pack only.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import boto3
import pytest

from agent_support import job_document
from git_https_server import bare_repository
from git_ssh_server import PrivateSshGitServer, new_key, public_line
from spottrain.agent import clone, deploy_key
from spottrain.agent.logs import OutputLog

COMPLETED = "status/completed.json"
KEY_SECRET = "/spottrain/deploy-key"


@pytest.fixture
def deploy_pair():
    """(private key as the secret holds it: `spottrain secret put` drops its last newline, public line)."""
    key = new_key()
    return key.export_private_key().decode().rstrip("\n"), public_line(key)


@pytest.fixture
def ssh_host(training_repo, tmp_path, deploy_pair):
    root = tmp_path / "ssh-host"
    root.mkdir()
    bare_repository(root, "payload", training_repo)
    with PrivateSshGitServer(root, deploy_pair[1]) as server:
        yield server


def _clone(server, dest, key: str, known_hosts: str):
    output = OutputLog(dest.parent / "logs", 1, 1 << 20)
    secret = deploy_key.DeployKey(KEY_SECRET, key, known_hosts)
    output.secret_values = secret.mask_values()
    with deploy_key.git_ssh_env(secret) as ssh_env:
        result = clone.clone(
            server.url("payload"), "v1", dest, env={**os.environ, **ssh_env}, output=output, should_stop=lambda: None
        )
    return result, output.tail(), secret


def _key_lines(key: str) -> list[str]:
    return [line for line in key.splitlines() if not line.startswith("-----")]


def test_given_the_deploy_key_when_cloning_then_no_command_line_log_or_file_left_holds_it(
    ssh_host, deploy_pair, tmp_path, monkeypatch
):
    # Given a temp folder we can see into, and a process list watched while git runs (what `ps` shows any user)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    watching = subprocess.Popen(
        ["sh", "-c", "for i in $(seq 30); do ps -eo args; done"], stdout=subprocess.PIPE, text=True
    )
    key = deploy_pair[0]

    # When the agent's clone runs with the key
    result, _, _ = _clone(ssh_host, tmp_path / "work" / "payload", key, ssh_host.known_hosts)
    seen = watching.communicate()[0]

    # Then the clone worked over ssh, and the key's lines are in no command line, log, clone or leftover file
    assert result.exit_code == 0 and (tmp_path / "work" / "payload" / "train.py").exists()
    assert ssh_host.commands == [("git-upload-pack '/payload.git'", 0)]
    files = [path.read_text(errors="replace") for path in (tmp_path / "work").rglob("*") if path.is_file()]
    assert [line for line in _key_lines(key) if line in seen or any(line in text for text in files)] == []
    assert list((tmp_path / "tmp").iterdir()) == []  # the key's folder went with the clone


def test_given_known_hosts_with_a_port_wildcard_when_cloning_then_ssh_accepts_the_host(ssh_host, deploy_pair, tmp_path):
    # Given the stack-wide form `[127.0.0.1]:*` (one line for every port of a host), which the spec rules accept too
    known_hosts = ssh_host.known_hosts.replace(f":{ssh_host.port} ", ":* ")

    result, tail, _ = _clone(ssh_host, tmp_path / "work" / "payload", deploy_pair[0], known_hosts)

    assert result.exit_code == 0, tail


def test_given_a_key_the_host_does_not_authorize_when_cloning_then_the_fix_names_the_secret_and_deploy_keys(
    ssh_host, tmp_path
):
    stranger = new_key().export_private_key().decode()

    result, tail, secret = _clone(ssh_host, tmp_path / "work" / "payload", stranger, ssh_host.known_hosts)

    assert result.exit_code != 0 and not result.stop
    assert ssh_host.commands == []  # it never got in
    fix = deploy_key.refusal(tail, ssh_host.url("payload"), secret)
    assert fix is not None and fix.startswith(f"the server refused the deploy key in {KEY_SECRET}"), tail


def test_given_known_hosts_with_another_key_when_cloning_then_the_fix_says_the_host_key_does_not_match(
    ssh_host, deploy_pair, tmp_path
):
    impostor = f"[127.0.0.1]:{ssh_host.port} {public_line(new_key())}"

    result, tail, secret = _clone(ssh_host, tmp_path / "work" / "payload", deploy_pair[0], impostor)

    assert result.exit_code != 0 and ssh_host.commands == []
    fix = deploy_key.refusal(tail, ssh_host.url("payload"), secret)
    assert fix is not None and fix.startswith(f"the host key of [127.0.0.1]:{ssh_host.port} does not match"), tail


def test_given_a_secret_that_is_no_private_key_when_cloning_then_the_fix_says_to_store_the_key_file(ssh_host, tmp_path):
    result, tail, secret = _clone(
        ssh_host, tmp_path / "work" / "payload", "not-a-key-" + "x" * 20, ssh_host.known_hosts
    )

    assert result.exit_code != 0
    fix = deploy_key.refusal(tail, ssh_host.url("payload"), secret)
    assert fix is not None and f"{KEY_SECRET} (repository_auth.ssh_key_secret) does not hold a private key" in fix, tail


def test_ssh_command_pins_the_key_and_known_hosts_and_never_prompts(tmp_path):
    command = deploy_key.ssh_command(tmp_path / "key", tmp_path / "known hosts")

    assert command.startswith("ssh -F /dev/null -i ")
    for option in (
        "IdentitiesOnly=yes",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "GlobalKnownHostsFile=/dev/null",
    ):
        assert f"-o {option}" in command
    assert f"'UserKnownHostsFile={tmp_path}/known hosts'" in command  # quoted for git's shell


# ----- the agent, end to end on this machine: secret from SSM, clone, outcome ---------------------


def _put_key(aws_env, name: str, value: str) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=aws_env["AWS_ENDPOINT_URL"])
    ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def _ssh_job(agent, server, secret: str, known_hosts: str) -> dict:
    document = job_document(server.root, agent.marks)
    document["job"].update(
        repository_url=server.url("payload"),
        repository_auth={"ssh_key_secret": secret, "known_hosts": known_hosts},
    )
    return document


def test_given_a_deploy_key_secret_when_the_agent_runs_the_job_then_it_clones_over_ssh_and_shows_the_key_nowhere(
    agent, ssh_host, deploy_pair, aws_env, tmp_path
):
    # Given the deploy key in SSM, and the agent's temp folder where the test can see it
    key = deploy_pair[0]
    _put_key(aws_env, f"{KEY_SECRET}-{agent.bucket}", key)
    agent.put_job(_ssh_job(agent, ssh_host, f"{KEY_SECRET}-{agent.bucket}", ssh_host.known_hosts))
    (tmp_path / "tmp").mkdir()

    # When the agent runs it
    console = agent.start(TMPDIR=str(tmp_path / "tmp")).wait()

    # Then the job ran from the ssh clone, and no line of the key is in anything the agent wrote or left
    assert agent.json(COMPLETED)["exit_code"] == 0, console
    assert ssh_host.commands == [("git-upload-pack '/payload.git'", 0)]
    written = [agent.output_log(), agent.text("logs/attempt-1/agent.log"), console]
    written += [path.read_text(errors="replace") for path in agent.workdir.rglob("*") if path.is_file()]
    written += [path.read_text(errors="replace") for path in agent.home.rglob("*") if path.is_file()]
    assert [line for line in _key_lines(key) if any(line in text for text in written)] == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_given_a_deploy_key_the_host_refuses_when_the_agent_runs_the_job_then_it_fails_in_the_clone_phase_saying_so(
    agent, ssh_host, aws_env
):
    _put_key(aws_env, f"{KEY_SECRET}-{agent.bucket}", new_key().export_private_key().decode())
    agent.put_job(_ssh_job(agent, ssh_host, f"{KEY_SECRET}-{agent.bucket}", ssh_host.known_hosts))

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert (completed["failed_phase"], completed["reason"]) == ("clone", "clone_failed")
    assert f"the server refused the deploy key in {KEY_SECRET}-{agent.bucket}" in completed["message"]
    assert "add its public key" in completed["message"] and not (agent.home / "payload").exists()
