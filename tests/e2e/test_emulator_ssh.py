"""A private repository over ssh with a deploy key: end to end in the emulator, and its two refusals.

The host is tests/support/git_ssh_server.py (asyncssh on loopback: one authorized deploy key, a host key
of its own, git-upload-pack only). The stack is deployed with `sshKnownHosts` naming that host, as
`-c sshKnownHosts=...` would: a job that gives no known_hosts of its own checks the host against it.
"""

from __future__ import annotations

import json

import pytest

from e2e_support import everything_left, git_repository
from git_https_server import bare_repository
from git_ssh_server import PrivateSshGitServer, new_key, public_line
from spottrain.contract import layout
from spottrain.local import Emulator
from spottrain.secret_store import put_secret

KEY_SECRET = "/spottrain/e2e/deploy-key"
STRANGER_SECRET = "/spottrain/e2e/stranger-key"
TRAIN = (
    "import os, pathlib\n"
    "out = pathlib.Path(os.environ['SPOTTRAIN_OUTPUT_DIR'])\n"
    "out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'cloned.txt').write_text('over ssh')\n"
)


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    """(server, deploy key as its secret holds it): a repository only that key may fetch."""
    folder = tmp_path_factory.mktemp("ssh-git-host")
    bare_repository(folder, "deploy-repo", git_repository(folder / "source", {"train.py": TRAIN}))
    key = new_key()
    with PrivateSshGitServer(folder, public_line(key)) as server:
        yield server, key.export_private_key().decode().rstrip("\n")  # as `spottrain secret put < key` stores it


@pytest.fixture(scope="module")
def emulator(emulator_workdir, ssh_host):
    server, key = ssh_host
    with Emulator(emulator_workdir, context={"sshKnownHosts": server.known_hosts}) as running:
        put_secret(running.client("ssm"), KEY_SECRET, key)
        put_secret(running.client("ssm"), STRANGER_SECRET, new_key().export_private_key().decode())
        yield running


def _spec(server: PrivateSshGitServer, exec_name: str, **auth: str) -> dict:
    return {
        "exec_name": exec_name,
        "repository_url": server.url("deploy-repo"),
        "repository_auth": {"ssh_key_secret": KEY_SECRET, **auth},
        "repository_ref": "main",
        "data_dir": "data",
        "output_dir": "result",
        "data_get_command": "true",
        "exec_command": "python train.py",
    }


@pytest.mark.timeout(300)
def test_given_a_deploy_key_secret_and_the_stacks_known_hosts_when_the_job_runs_then_it_succeeds_and_the_key_is_nowhere(
    emulator, ssh_host
):
    # Given a job cloning over ssh with the deploy key's secret, and no known_hosts of its own
    server, key = ssh_host
    spec = _spec(server, "ssh-job")

    # When it runs to its end
    arn = emulator.start_job(spec)
    final = emulator.wait(arn, timeout=240)
    left = everything_left(emulator, arn, spec["exec_name"], emulator.wait_for_emails(2, timeout=10))

    # Then it succeeded from the ssh clone, its host checked against the stack's sshKnownHosts
    assert final["status"] == "SUCCEEDED", final.get("cause")
    assert ("git-upload-pack '/deploy-repo.git'", 0) in server.commands
    assert left["s3: output/cloned.txt"] == b"over ssh"
    # And no line of the key is anywhere the run left: bucket, emails, execution history, the run folder
    lines = [line for line in key.splitlines() if not line.startswith("-----")]
    assert [where for where, body in left.items() if any(line.encode() in body for line in lines)] == []
    assert sum(where.startswith("file: ") for where in left) > 10  # the search was not vacuous


@pytest.mark.timeout(300)
def test_given_a_refused_key_or_a_wrong_host_key_when_the_jobs_run_then_each_fails_in_the_clone_phase_once_saying_why(
    emulator, ssh_host
):
    # Given one job whose key the host does not authorize, and one whose known_hosts names another host key
    server, _ = ssh_host
    impostor = f"[127.0.0.1]:{server.port} {public_line(new_key())}"
    specs = {
        "refused-key": _spec(server, "refused-key-job", ssh_key_secret=STRANGER_SECRET),
        "wrong-host-key": _spec(server, "wrong-host-key-job", known_hosts=impostor),
    }

    served_before = len(server.commands)

    # When both run
    arns = {case: emulator.start_job(spec) for case, spec in specs.items()}
    finals = {case: emulator.wait(arn, timeout=240) for case, arn in arns.items()}

    # Then each failed in the clone phase on its only attempt, with the fix in its completion marker
    expected = {
        "refused-key": f"the server refused the deploy key in {STRANGER_SECRET} (repository_auth.ssh_key_secret)",
        "wrong-host-key": f"the host key of [127.0.0.1]:{server.port} does not match known_hosts",
    }
    s3 = emulator.client("s3")
    for case, spec in specs.items():
        bucket = emulator.stack.job_bucket(spec["exec_name"])
        completed = json.loads(s3.get_object(Bucket=bucket, Key=layout.COMPLETED_KEY)["Body"].read())
        report = json.loads(s3.get_object(Bucket=bucket, Key=layout.REPORT_KEY)["Body"].read())
        assert finals[case]["status"] == "FAILED", case
        assert (completed["failed_phase"], completed["reason"]) == ("clone", "clone_failed"), case
        assert expected[case] in completed["message"], completed["message"]
        assert len(report["attempts"]) == 1, case
    assert server.commands[served_before:] == []  # ssh stopped both before git could ask for anything
