"""A job using a secret and a private repository runs end to end, and nothing the run left holds either value.

Issue 13's proof: the values go from SSM to the commands' environment (the secret) and to git's credential
helper (the repository's token), and nowhere else. The repository is served over HTTPS on loopback by
`git http-backend` behind basic auth (tests/support/git_https_server.py). Everything
the run left is searched: every object in the job's bucket (logs, output, markers, report), every
email, the execution's input and history, and every file in the emulator's run folder (the instances'
sandboxes and consoles, the Lambdas' logs).
"""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest

from e2e_support import everything_left, git_repository
from git_https_server import PrivateGitServer, bare_repository, self_signed_certificate
from spottrain.contract import layout
from spottrain.local import Emulator
from spottrain.secret_store import put_secret

TOKEN_SECRET = "/spottrain/e2e/git-token"

# Uses the value (its hash goes to output/) and prints it, which the agent must mask.
TRAIN = (
    "import hashlib, os, pathlib\n"
    "token = os.environ['DATASET_TOKEN']\n"
    "print('using token', token, flush=True)\n"
    "out = pathlib.Path(os.environ['SPOTTRAIN_OUTPUT_DIR'])\n"
    "out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'token.sha256').write_text(hashlib.sha256(token.encode()).hexdigest())\n"
)


@pytest.fixture(scope="module")
def private_host(tmp_path_factory):
    """(server, token): a private repository holding the training script, fetchable with the token only."""
    folder = tmp_path_factory.mktemp("git-host")
    source = git_repository(folder / "source", {"train.py": TRAIN})
    bare_repository(folder, "secret-repo", source)
    token = "ght_" + secrets.token_hex(16)
    certificate, key = self_signed_certificate(folder)
    with PrivateGitServer(folder, "x-access-token", token, certificate, key) as server:
        yield server, token


@pytest.fixture(scope="module")
def emulator(emulator_workdir, private_host):
    server, token = private_host
    # The simulated AMI trusts the host's certificate, as a real one trusts a public CA's
    with Emulator(emulator_workdir, agent_env={"GIT_SSL_CAINFO": str(server.certificate)}) as running:
        put_secret(running.client("ssm"), TOKEN_SECRET, token)
        yield running


def _spec(server: PrivateGitServer, exec_name: str, token_secret: str = TOKEN_SECRET) -> dict:
    return {
        "exec_name": exec_name,
        "repository_url": server.url("secret-repo"),
        "repository_name": "secret-repo",
        "repository_auth": {"token_secret": token_secret},
        "repository_ref": "main",
        "data_dir": "data",
        "output_dir": "result",
        "data_get_command": "true",
        "exec_command": "python train.py",
        "secrets": {"DATASET_TOKEN": "/spottrain/e2e/dataset-token"},
    }


@pytest.mark.timeout(300)
def test_given_a_job_with_a_secret_and_a_private_repository_when_it_runs_then_nothing_left_holds_either_value(
    emulator, private_host
):
    # Given a secret in the stack's SSM and a job cloning the private repository with the token secret
    server, token = private_host
    value = "dst-" + secrets.token_urlsafe(24)
    put_secret(emulator.client("ssm"), "/spottrain/e2e/dataset-token", value)
    spec = _spec(server, "secret-job")

    # When the job runs to its end
    arn = emulator.start_job(spec)
    final = emulator.wait(arn, timeout=240)
    emails = emulator.wait_for_emails(2, timeout=10)
    left = everything_left(emulator, arn, spec["exec_name"], emails)
    instance_calls = emulator.instance_calls

    # Then the job succeeded, having authenticated to the host, with the value in its command's environment
    assert final["status"] == "SUCCEEDED", final.get("cause")
    assert any(status == 200 and "git-upload-pack" in path for path, status in server.requests), server.requests
    assert left["s3: output/token.sha256"].decode() == hashlib.sha256(value.encode()).hexdigest()
    log = b"".join(body for where, body in left.items() if where.startswith("s3: logs/attempt-1/output-"))
    assert b"using token ********" in log
    # And the instance read both secrets with its role, as the deployed policies allow
    reads = [call for call in instance_calls if call.action == "ssm:GetParameter"]
    assert len(reads) >= 2 and all(call.verdict.allowed for call in reads), [str(c) for c in reads]
    # And neither value is anywhere: bucket, emails, execution input and history, the emulator's run folder
    for needle in (value, token):
        assert [where for where, body in left.items() if needle.encode() in body] == [], needle[:4]
    run_files = [where for where in left if where.startswith("file: ")]
    assert len(run_files) > 10 and any("console.log" in where for where in run_files)  # the search was not vacuous


@pytest.mark.timeout(300)
def test_given_a_wrong_token_when_the_job_runs_then_it_fails_in_the_clone_phase_once_naming_the_secret(
    emulator, private_host
):
    # Given a token secret the host refuses
    server, _ = private_host
    put_secret(emulator.client("ssm"), "/spottrain/e2e/dataset-token", "any-value")
    put_secret(emulator.client("ssm"), "/spottrain/e2e/stale-token", "ght_" + secrets.token_hex(16))
    spec = _spec(server, "stale-token-job", token_secret="/spottrain/e2e/stale-token")

    # When the job runs
    final = emulator.wait(emulator.start_job(spec), timeout=240)

    # Then it failed in the clone phase, on its only attempt, saying which secret to fix and how
    s3, bucket = emulator.client("s3"), emulator.stack.job_bucket(spec["exec_name"])
    completed = json.loads(s3.get_object(Bucket=bucket, Key=layout.COMPLETED_KEY)["Body"].read())
    report = json.loads(s3.get_object(Bucket=bucket, Key=layout.REPORT_KEY)["Body"].read())
    assert final["status"] == "FAILED"
    assert (completed["failed_phase"], completed["reason"]) == ("clone", "clone_failed")
    assert "refused the token in /spottrain/e2e/stale-token" in completed["message"]
    assert "spottrain secret put /spottrain/e2e/stale-token" in completed["message"]
    assert len(report["attempts"]) == 1
