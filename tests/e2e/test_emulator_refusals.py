"""What the workflow refuses to do in the emulator: relaunch after a failed bootstrap, run one job twice.

One emulator for both stories; each job has its own exec_name, so its own bucket and emails.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from e2e_support import wait_until
from spottrain.contract import layout
from spottrain.local import Emulator

LAUNCH = "spottrain.functions.request_spot_instance.handler"


@pytest.fixture(scope="module")
def emulator(emulator_workdir) -> Iterator[Emulator]:
    with Emulator(emulator_workdir) as running:
        yield running
        gaps = running.permission_gaps()  # the console read and the executions listing are granted too
        assert gaps == [], "\n".join(str(gap) for gap in gaps)


def _emails_of(emulator: Emulator, exec_name: str) -> list[dict]:
    return [email for email in emulator.emails if f"[spottrain] {exec_name} " in email["subject"]]


@pytest.mark.timeout(300)
def test_given_a_bootstrap_that_cannot_fetch_its_agent_then_the_job_fails_once_with_the_console_in_the_email(
    emulator, slow_job
):
    # Given an agent asset that the instance's bootstrap cannot download (as with no route to S3)
    environment = emulator.client("lambda").get_function_configuration(
        FunctionName=emulator.outputs["TerminateFunctionName"]
    )["Environment"]["Variables"]
    s3 = emulator.client("s3")
    agent = s3.get_object(Bucket=environment["AGENT_BUCKET"], Key=environment["AGENT_KEY"])["Body"].read()
    s3.delete_object(Bucket=environment["AGENT_BUCKET"], Key=environment["AGENT_KEY"])
    launches = emulator.lambda_host.invocations[LAUNCH]
    try:
        # When a job runs
        job = {**slow_job, "exec_name": "no-agent-job"}
        final = emulator.wait(emulator.start_job(job), timeout=180)
    finally:
        s3.put_object(Bucket=environment["AGENT_BUCKET"], Key=environment["AGENT_KEY"], Body=agent)

    # Then it failed after one launch, not as an interruption, and no pool was blamed
    assert (final["status"], final.get("error")) == ("FAILED", "TrainingFailed"), final.get("cause")
    assert emulator.lambda_host.invocations[LAUNCH] == launches + 1
    report = json.loads(
        s3.get_object(Bucket=emulator.stack.job_bucket(job["exec_name"]), Key=layout.REPORT_KEY)["Body"].read()
    )
    assert [attempt["outcome"] for attempt in report["attempts"]] == ["FAILED"]
    # And the failure email says "bootstrap failed" with the console's last lines (the bootstrap's own error)
    emails = wait_until(
        lambda: [e for e in _emails_of(emulator, "no-agent-job") if " failed " in e["subject"]],
        timeout=20,
        what="the failure email",
    )
    assert emails[0]["subject"].startswith("[spottrain] no-agent-job failed (bootstrap failed)")
    assert "Last " in emails[0]["body"] and "lines of the console output of i-" in emails[0]["body"]
    assert "spottrain bootstrap: FAILED" in emails[0]["body"]
    assert not [e for e in _emails_of(emulator, "no-agent-job") if "interrupted" in e["subject"]]


@pytest.mark.timeout(300)
def test_given_a_running_job_when_the_same_exec_name_starts_again_then_the_second_run_is_refused(emulator, slow_job):
    # Given a job training
    job = {**slow_job, "exec_name": "once-only-job"}
    first = emulator.start_job(job)
    bucket = emulator.stack.job_bucket(job["exec_name"])
    s3 = emulator.client("s3")
    wait_until(
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix=layout.attempt_logs_prefix(1)).get("KeyCount", 0)
        if bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        else 0,
        timeout=120,
        what="training logs",
    )
    try:
        # When a second execution of the same job starts
        second = emulator.wait(emulator.start_job(job), timeout=60)

        # Then it fails at once, naming the running one, and the first run goes on with its one instance
        assert (second["status"], second.get("error")) == ("FAILED", "JobAlreadyRunning")
        assert first.rsplit(":", 1)[1] in second["cause"]
        sfn = emulator.client("stepfunctions")
        assert sfn.describe_execution(executionArn=first)["status"] == "RUNNING"
        assert sum(instance.alive for instance in emulator.ec2.instances.values()) >= 1
    finally:
        emulator.cancel(job["exec_name"])
