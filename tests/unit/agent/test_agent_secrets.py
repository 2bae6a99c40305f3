"""The job's secrets on the instance: read with the role, in the commands' environment, masked everywhere it writes."""

from __future__ import annotations

import hashlib
import json
import secrets

import boto3
import pytest
from botocore.exceptions import ClientError

from agent_support import job_document
from spottrain.agent import secrets as secret_reader

COMPLETED = "status/completed.json"
# Prints the secret (the agent must mask it) and its hash (proof the command had the value).
SHOW = (
    "python3 -c \"import hashlib, os; v = os.environ['API_TOKEN']; print('token is', v); "
    "print('sha', hashlib.sha256(v.encode()).hexdigest())\""
)


def test_given_a_secret_in_ssm_when_the_job_runs_then_the_command_has_it_and_no_output_the_agent_wrote_shows_it(
    agent, training_repo, aws_env
):
    # Given an SSM SecureString under the prefix (a fresh value: nothing else could contain it)
    value = "tok-" + secrets.token_hex(12)
    boto3.client("ssm", region_name="us-east-1", endpoint_url=aws_env["AWS_ENDPOINT_URL"]).put_parameter(
        Name=f"/spottrain/{agent.bucket}", Value=value, Type="SecureString", Overwrite=True
    )
    agent.put_job(
        job_document(training_repo, agent.marks, exec_command=SHOW, secrets={"API_TOKEN": f"/spottrain/{agent.bucket}"})
    )

    # When the agent runs the job
    console = agent.start().wait()

    # Then the command saw the value, and the log in S3, the log on disk, the agent's own log and the markers
    # show only the mask
    log = agent.output_log()
    assert f"sha {hashlib.sha256(value.encode()).hexdigest()}" in log and "token is ********" in log
    written = [log, agent.text("logs/attempt-1/agent.log"), json.dumps(agent.json(COMPLETED)), console]
    written += [path.read_text(errors="replace") for path in agent.workdir.rglob("*") if path.is_file()]
    assert agent.json(COMPLETED)["exit_code"] == 0
    assert not [text for text in written if value in text]


def test_given_a_secret_that_does_not_exist_then_the_job_fails_before_cloning_naming_the_variable_and_the_fix(
    agent, training_repo
):
    agent.put_job(job_document(training_repo, agent.marks, secrets={"API_TOKEN": "/spottrain/nowhere-" + agent.bucket}))

    agent.start().wait()

    completed = agent.json(COMPLETED)
    assert (completed["failed_phase"], completed["reason"]) == ("start", "secret_unreadable")
    assert completed["message"].startswith("secrets.API_TOKEN: /spottrain/nowhere-")
    assert "spottrain secret put" in completed["message"]
    assert not (agent.home / "payload").exists()


class _Sts:
    """STS refusing AssumeRole `refusals` times (a trust policy not yet in force), then answering."""

    def __init__(self, refusals: int):
        self.refusals, self.calls = refusals, []

    def assume_role(self, RoleArn: str, RoleSessionName: str) -> dict:
        self.calls.append((RoleArn, RoleSessionName))
        if len(self.calls) <= self.refusals:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, "AssumeRole")
        return {"Credentials": {"AccessKeyId": "ASIA" + "X" * 16, "SecretAccessKey": "s", "SessionToken": "t"}}


class _Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


ROLE = "arn:aws:iam::123456789012:role/spottrain/jobs/SpotTrain/job-abc"


def test_given_a_trust_policy_not_yet_in_force_when_assuming_then_the_agent_retries_until_it_is():
    # Given STS refusing twice before the new trust policy applies
    sts, clock = _Sts(refusals=2), _Clock()

    # When the agent assumes the job's secrets role
    credentials = secret_reader.assume(sts, ROLE, "spottrain-i-0abc", sleep=clock.sleep, clock=lambda: clock.now)

    # Then it got the role's credentials on the third call, as this instance's session, after backing off
    assert credentials["SessionToken"] == "t" and len(sts.calls) == 3
    assert sts.calls[0] == (ROLE, "spottrain-i-0abc") and clock.slept == [1.0, 2.0]


def test_given_a_role_that_never_admits_this_instance_then_the_agent_gives_up_in_bounded_time_naming_the_role():
    sts, clock = _Sts(refusals=10**6), _Clock()

    with pytest.raises(secret_reader.SecretUnreadable) as raised:
        secret_reader.assume(sts, ROLE, "spottrain-i-0abc", wait_seconds=60, sleep=clock.sleep, clock=lambda: clock.now)

    assert clock.now <= 60 and len(sts.calls) < 10
    assert ROLE in str(raised.value) and "AccessDenied" in str(raised.value)
    assert "admits this job's current instance only" in str(raised.value)
