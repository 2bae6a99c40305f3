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

from e2e_support import everything_left, git_repository, instance_session, outcome, wait_until
from git_https_server import PrivateGitServer, bare_repository, self_signed_certificate
from spottrain.contract import layout
from spottrain.contract.secrets import SECRETS_ROLE_FIELD
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
    # And the instance read both secrets with the job's own secrets role, as the deployed policies allow
    reads = [call for call in instance_calls if call.action == "ssm:GetParameter"]
    assert len(reads) >= 2 and all(call.verdict.allowed for call in reads), [str(c) for c in reads]
    role_arn = json.loads(left[f"s3: {layout.JOB_KEY}"])[SECRETS_ROLE_FIELD]
    assert {call.assumed_role for call in reads} == {role_arn.rsplit("/", 1)[-1]}
    # And the role went with the job's end
    assert _job_roles(emulator) == []
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


def _job_roles(emulator) -> list[str]:
    return [role["Arn"] for role in emulator.client("iam").list_roles(PathPrefix="/spottrain/jobs/")["Roles"]]


def _reader_of(emulator, secret: str) -> str:
    """The instance whose session read `secret` ("" until one has)."""
    return next(
        (
            call.instance_id
            for call in emulator.instance_calls
            if call.action == "ssm:GetParameter" and call.resource.endswith(secret) and call.verdict.allowed
        ),
        "",
    )


@pytest.mark.timeout(300)
def test_given_two_jobs_with_secrets_when_both_train_then_an_instance_reads_its_own_secret_and_never_the_others(
    emulator, slow_job
):
    # Given two training jobs, A and B, each naming a secret of its own
    ssm = emulator.client("ssm")
    values = {name: f"{name}-" + secrets.token_urlsafe(16) for name in ("job-a", "job-b")}
    names = {name: f"/spottrain/e2e/{name}-secret" for name in values}
    for name, value in values.items():
        put_secret(ssm, names[name], value)
    specs = {name: {**slow_job, "exec_name": name, "secrets": {"JOB_SECRET": names[name]}} for name in values}
    runs = {name: emulator.start_job(spec) for name, spec in specs.items()}
    readers = {name: wait_until(lambda: _reader_of(emulator, names[name]), 150, f"{name} read") for name in values}
    s3 = emulator.client("s3")
    role = {
        name: json.loads(s3.get_object(Bucket=emulator.stack.job_bucket(name), Key=layout.JOB_KEY)["Body"].read())[
            SECRETS_ROLE_FIELD
        ]
        for name in values
    }

    # When job A's instance tries B's secret directly with the instance role, then by assuming B's secrets role,
    # and reads its own through its own role
    attacker = instance_session(emulator, readers["job-a"])
    sts = attacker.client("sts", endpoint_url=emulator.endpoint)
    own = sts.assume_role(RoleArn=role["job-a"], RoleSessionName="attack")["Credentials"]
    own_ssm = attacker.client(
        "ssm",
        endpoint_url=emulator.endpoint,
        aws_access_key_id=own["AccessKeyId"],
        aws_secret_access_key=own["SecretAccessKey"],
        aws_session_token=own["SessionToken"],
    )
    attack = {
        "B's secret, instance role": outcome(
            lambda: attacker.client("ssm", endpoint_url=emulator.endpoint).get_parameter(
                Name=names["job-b"], WithDecryption=True
            )
        ),
        "assume B's role": outcome(lambda: sts.assume_role(RoleArn=role["job-b"], RoleSessionName="attack")),
        "B's secret, A's role": outcome(lambda: own_ssm.get_parameter(Name=names["job-b"], WithDecryption=True)),
    }
    own_value = own_ssm.get_parameter(Name=names["job-a"], WithDecryption=True)["Parameter"]["Value"]
    roles_while_training = _job_roles(emulator)
    for name in values:
        emulator.cancel(name)
    ended = {name: emulator.wait(arn, timeout=60)["status"] for name, arn in runs.items()}

    # Then each instance read its own job's secret; A's attempts on B's are all AccessDenied
    assert readers["job-a"] != readers["job-b"]
    assert attack == {
        "B's secret, instance role": "AccessDeniedException",
        "assume B's role": "AccessDenied",
        "B's secret, A's role": "AccessDeniedException",
    }, attack
    assert own_value == values["job-a"]
    # And each run had a role of its own, which its cancel deleted
    assert sorted(roles_while_training) == sorted(role.values()) and role["job-a"] != role["job-b"]
    assert ended == {"job-a": "ABORTED", "job-b": "ABORTED"}
    wait_until(lambda: _job_roles(emulator) == [], 30, "the cancelled jobs' secrets roles deleted")
    # And the functions' calls making, admitting to and deleting the roles are all in their deployed roles
    iam_calls = {
        (call.handler.split(".")[2], call.operation) for call in emulator.lambda_calls if call.service == "iam"
    }
    assert {
        ("create_bucket", "CreateRole"),
        ("create_bucket", "PutRolePolicy"),
        ("request_spot_instance", "UpdateAssumeRolePolicy"),
        ("terminate_instance", "DeleteRole"),
    } <= iam_calls, iam_calls
    assert emulator.permission_gaps() == []
