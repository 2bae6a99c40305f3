"""Notify: exactly one email per workflow event, with what a user needs to act on it and nothing secret."""

from __future__ import annotations

from spottrain.functions.shared import runtime

import datetime as dt
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from jobstate_support import FakeLambdaContext, job_state, make_settings, received, subscribe_queue
from jobstate_support import aws, lambda_env, requests_use_tls  # noqa: F401 (fixtures, used by name)
from spottrain.functions import create_bucket, notify
from spottrain.contract import layout
from spottrain.functions.shared import report
from spottrain.contract.status import NotifyEvent, TransientError

NOW = dt.datetime(2026, 1, 1, 0, 3, 12, tzinfo=dt.timezone.utc)
INSTANCE = {
    "instance_id": "i-0abc",
    "instance_type": "g5.xlarge",
    "subnet_id": "subnet-1",
    "az": "us-east-1a",
    "lifecycle": "spot",
    "spot_request_id": "sir-1",
    "launched_at": "2026-01-01T00:00:00+00:00",
    "price_per_hour": 0.4,
    "on_demand_price_per_hour": 1.0,
}


@pytest.fixture
def running_job(lambda_env):
    """A job whose bucket exists and whose first attempt was launched at 00:00:00."""
    s3 = boto3.client("s3")
    state = job_state()
    state["storage"] = create_bucket.create_job_bucket(s3, make_settings(), state)
    state["launch"] = {"status": "LAUNCHED", "attempt": 1, "instance": dict(INSTANCE), "pools_failed": []}
    report.record_launch(s3, state["storage"]["bucket"], "pix2pix-facade", 1, INSTANCE)
    return state, s3, subscribe_queue(lambda_env)


def publish(event: NotifyEvent, state: dict, now: dt.datetime = NOW) -> dict:
    return notify.publish_event(boto3.client("sns"), boto3.client("s3"), runtime.settings(), event, state, now=now)


@pytest.mark.parametrize("event", list(NotifyEvent))
def test_given_any_event_when_handler_runs_then_exactly_one_email_with_human_subject(running_job, event):
    state, _, inbox = running_job
    state["poll"] = {"status": "FAILED", "detail": {"exit_code": 1}}
    state["error"] = {"Error": "States.TaskFailed", "Cause": "boom"}

    answer = notify.handler({"event": event.value, "state": state}, FakeLambdaContext())

    emails = received(inbox)
    assert len(emails) == 1 and answer["message_id"] == emails[0]["MessageId"]
    assert emails[0]["Subject"].startswith("[spottrain] pix2pix-facade ") and len(emails[0]["Subject"]) <= 100
    assert "Job: pix2pix-facade" in emails[0]["Message"]


def test_given_completed_training_when_notified_then_duration_cost_savings_and_locations(running_job):
    state, s3, inbox = running_job
    report.record_end(s3, state["storage"]["bucket"], 1, "SUCCEEDED", ended_at=NOW)
    state["poll"] = {"status": "SUCCEEDED", "detail": {"exit_code": 0}}

    publish(NotifyEvent.COMPLETED, state)

    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade completed in 3m12s on g5.xlarge (spot)"
    body = email["Message"]
    assert "Instance: i-0abc g5.xlarge (spot) in us-east-1a at $0.4000/h" in body
    assert "Attempt: 1 of 3" in body
    assert "Billable time: 3m12s over 1 attempt(s)" in body
    # 192 s at $0.40/h vs $1.00/h on-demand
    assert "Estimated cost: $0.0213" in body and "On-demand would cost: $0.0533; saved $0.0320 (60%)" in body
    bucket = state["storage"]["bucket"]
    assert f"Output: s3://{bucket}/output/" in body and f"Report: s3://{bucket}/report.json" in body
    assert f"Logs: s3://{bucket}/logs/attempt-1/" in body


def test_given_failed_training_when_notified_then_exit_code_and_last_20_log_lines_of_newest_part(running_job):
    state, s3, inbox = running_job
    bucket = state["storage"]["bucket"]
    s3.put_object(
        Bucket=bucket, Key=layout.output_log_key(1, 1), Body="".join(f"old {i}\n" for i in range(100)).encode()
    )
    s3.put_object(
        Bucket=bucket, Key=layout.output_log_key(1, 2), Body="".join(f"new {i}\n" for i in range(30)).encode()
    )
    state["poll"] = {"status": "FAILED", "detail": {"exit_code": 2, "failed_phase": "exec"}}

    publish(NotifyEvent.FAILED, state)

    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade failed (exit code 2) after 3m12s"
    body = email["Message"]
    assert "Details: exit_code=2, failed_phase=exec" in body
    assert f"Last 20 lines of {layout.output_log_key(1, 2)}:" in body
    tail = [line.strip() for line in body.split("Last 20 lines of")[1].splitlines()[1:21]]
    assert tail == [f"new {i}" for i in range(10, 30)]
    assert "old " not in body


@pytest.mark.parametrize(
    "kept_seconds, instance_state, shown",
    [(600, "running", True), (0, "running", False), (600, "terminated", False)],
    ids=["debug door", "terminated at once", "instance already gone"],
)
def test_given_a_failed_training_when_notified_then_the_debug_door_gives_the_session_command_and_stop_time(
    running_job, kept_seconds, instance_state, shown
):
    # Given a failed training whose instance the workflow keeps for on_failure.keep_alive_minutes (10 min)
    state, _, inbox = running_job
    state["poll"] = {
        "status": "FAILED",
        "terminate_after_seconds": kept_seconds,
        "detail": {"exit_code": 2, "instance_state": instance_state},
    }

    publish(NotifyEvent.FAILED, state)

    # Then the email says how to reach it and when it stops, and says nothing of a door that is not open
    body = received(inbox)[0]["Message"]
    assert ("Open a shell on it: aws ssm start-session --target i-0abc" in body) is shown
    assert ("kept for debugging (on_failure.keep_alive_minutes) until 2026-01-01T00:13:12+00:00" in body) is shown


def test_given_newest_log_part_is_short_when_tailing_then_previous_part_fills_in(running_job):
    state, s3, _ = running_job
    bucket = state["storage"]["bucket"]
    s3.put_object(
        Bucket=bucket, Key=layout.output_log_key(1, 1), Body="".join(f"old {i}\n" for i in range(50)).encode()
    )
    s3.put_object(Bucket=bucket, Key=layout.output_log_key(1, 2), Body=b"new 0\nnew 1\n")

    key, tail = notify.read_log_tail(s3, bucket, 1)

    assert key == layout.output_log_key(1, 2)
    assert tail == [f"old {i}" for i in range(32, 50)] + ["new 0", "new 1"]


def test_given_interrupted_spot_when_notified_then_subject_says_resuming_with_attempt(running_job):
    state, _, inbox = running_job
    state["poll"] = {"status": "INTERRUPTED", "retry_allowed": True, "detail": {"action": "terminate"}}

    publish(NotifyEvent.INTERRUPTED, state)

    assert (
        received(inbox)[0]["Subject"]
        == "[spottrain] pix2pix-facade interrupted on g5.xlarge (spot), attempt 1/3; resuming"
    )


def test_given_workflow_error_when_notified_then_lambda_cause_is_readable(running_job):
    state, _, inbox = running_job
    cause = json.dumps(
        {"errorType": "ClientError", "errorMessage": "UnauthorizedOperation on RunInstances", "stackTrace": ["..."]}
    )
    state["error"] = {"Error": "ClientError", "Cause": cause}

    publish(NotifyEvent.ERROR, state)

    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade stopped by an error: ClientError"
    assert "Cause: ClientError: UnauthorizedOperation on RunInstances" in email["Message"]


def test_given_error_before_bucket_exists_when_notified_then_email_still_goes_out(lambda_env):
    inbox = subscribe_queue(lambda_env)
    state = job_state()  # CreateBucket failed: no bucket, no launch
    state["error"] = {"Error": "BucketNameTaken", "Cause": "job.bucket: taken. Choose another exec_name."}

    publish(NotifyEvent.ERROR, state)

    email = received(inbox)[0]
    assert "BucketNameTaken" in email["Subject"] and "Choose another exec_name" in email["Message"]
    assert "Not available: report (NoSuchBucket)" in email["Message"]


def test_given_no_capacity_anywhere_when_notified_then_pools_and_spot_answer_listed(running_job):
    state, _, inbox = running_job
    state["launch"] = {
        "status": "EXHAUSTED",
        "attempt": 1,
        "pools_failed": ["g5.xlarge/subnet-1", "g4dn.xlarge/subnet-1"],
    }
    state["bid"] = {"status": "FAILED", "code": "capacity-not-available", "message": "There is no capacity"}

    publish(NotifyEvent.REQUEST_FAILED, state)

    body = received(inbox)[0]["Message"]
    assert "Tried instance types: g5.xlarge, g4dn.xlarge" in body
    assert "Pools without capacity: g5.xlarge/subnet-1, g4dn.xlarge/subnet-1" in body
    assert "Last spot answer: capacity-not-available There is no capacity" in body


def test_given_credentials_in_training_output_when_notified_then_they_are_redacted(running_job):
    state, s3, inbox = running_job
    # AWS's documentation example keys, assembled so no key-shaped literal sits in the repository
    key_id, secret = "AKIA" + "IOSFODNN7EXAMPLE", "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCYEXAMPLEKEY"
    leak = f"export AWS_ACCESS_KEY_ID={key_id}\naws_secret_access_key = {secret}\n"
    s3.put_object(Bucket=state["storage"]["bucket"], Key=layout.output_log_key(1, 1), Body=leak.encode())
    state["poll"] = {"status": "FAILED", "detail": {"exit_code": 1}}

    publish(NotifyEvent.FAILED, state)

    body = received(inbox)[0]["Message"]
    assert key_id not in body and secret not in body
    assert "AKIA****************" in body and "aws_secret_access_key = [redacted]" in body


def test_given_long_job_name_and_reason_when_notified_then_subject_is_cut_to_100_ascii(running_job):
    state, _, inbox = running_job
    state["job"]["exec_name"] = "a" * 40
    state["cancellation"] = {"reason": "execution aborted by the operator — see the runbook " * 3}

    publish(NotifyEvent.CANCELLED, state)

    subject = received(inbox)[0]["Subject"]
    assert len(subject) == 100 and subject.endswith("...") and subject.isascii()


def test_given_unknown_event_name_when_handler_runs_then_error_lists_valid_events(lambda_env):
    with pytest.raises(ValueError, match="event: 'DONE' is not a notify event. Use one of: REQUEST_FULFILLED"):
        notify.handler({"event": "DONE", "state": job_state()}, FakeLambdaContext())


def test_given_sns_throttles_when_publishing_then_transient_error(running_job, monkeypatch):
    state, s3, _ = running_job
    sns = boto3.client("sns")

    def throttled(**_):
        raise ClientError(
            {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            "Publish",
        )

    monkeypatch.setattr(sns, "publish", throttled)
    with pytest.raises(TransientError, match="Throttling"):
        notify.publish_event(sns, s3, runtime.settings(), NotifyEvent.COMPLETED, state, now=NOW)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (192, "3m12s"), (3600, "1h00m"), (93784, "1d2h")])
def test_given_seconds_when_formatting_then_compact_human_duration(seconds, text):
    assert notify.format_duration(seconds) == text


def test_given_terminal_drawing_in_the_log_when_notified_then_the_tail_is_plain_and_the_raw_log_untouched(running_job):
    # Given training output as Chainer's PrintReport and ProgressBar write it, coloured error included
    state, s3, inbox = running_job
    bucket = state["storage"]["bucket"]
    raw = (
        "epoch       main/loss \n\x1b[J     total [####......] 40.00%\n         4 iter\n\x1b[2A"
        "\x1b[J1           0.696091    \n\x1b[J     total [########..] 80.00%\n         8 iter\n\x1b[2A"
        "\x1b[1;31mRuntimeError\x1b[0m: CUDA out of memory\rRuntimeError: CUDA out of memory (retry 2)\n"
    ).encode()
    s3.put_object(Bucket=bucket, Key=layout.output_log_key(1, 1), Body=raw)
    state["poll"] = {"status": "FAILED", "detail": {"exit_code": 1}}

    # When the failure is announced
    publish(NotifyEvent.FAILED, state)

    # Then the email shows the rows a terminal would, with no escape codes; S3 keeps the bytes as written
    body = received(inbox)[0]["Message"]
    tail = body.split(f"Last 4 lines of {layout.output_log_key(1, 1)}:\n")[1].splitlines()[:4]
    assert tail == [
        "  epoch       main/loss",
        "  1           0.696091",
        "  RuntimeError: CUDA out of memory (retry 2)",
        "           8 iter",
    ]
    assert "\x1b" not in body and "\r" not in body
    assert s3.get_object(Bucket=bucket, Key=layout.output_log_key(1, 1))["Body"].read() == raw


def test_given_a_log_longer_than_the_tail_read_when_tailing_then_the_cut_first_line_is_dropped(
    running_job, monkeypatch
):
    # Given a log whose last 64 KiB begin in the middle of a coloured line
    state, s3, _ = running_job
    bucket = state["storage"]["bucket"]
    monkeypatch.setattr(notify, "LOG_TAIL_BYTES", 12)
    s3.put_object(Bucket=bucket, Key=layout.output_log_key(1, 1), Body=b"\x1b[31mfirst line\x1b[0m\nlast\n")

    # When the tail is read, Then no fragment of the cut line (nor of its escape code) shows
    assert notify.read_log_tail(s3, bucket, 1) == (layout.output_log_key(1, 1), ["last"])


def test_given_a_failed_bootstrap_when_notified_then_one_failure_email_with_the_console_tail(running_job):
    # Given the poll's verdict on an instance that shut down before its agent started
    state, _, inbox = running_job
    state["poll"] = {
        "status": "FAILED",
        "retry_allowed": True,
        "detail": {
            "reason": "bootstrap failed",
            "exit_code": None,
            "failed_phase": "bootstrap",
            "instance_state": "terminated",
            "message": "instance i-0abc never started its agent (Client.InstanceInitiatedShutdown)",
            "console_unavailable": None,
            "console_tail": [
                "spottrain bootstrap: job s3://b attempt 1: fetching agent s3://assets/agent.zip",
                'fatal error: Could not connect to the endpoint URL: "https://assets.s3.amazonaws.com/"',
                "spottrain bootstrap: FAILED (exit 1) at line 32",
            ],
        },
    }

    # When the failure is announced
    publish(NotifyEvent.FAILED, state)

    # Then the subject says the bootstrap failed (not an interruption), and the body holds the console's tail
    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade failed (bootstrap failed) after 3m12s"
    body = email["Message"]
    assert "Message: instance i-0abc never started its agent (Client.InstanceInitiatedShutdown)" in body
    assert "Details: failed_phase=bootstrap, instance_state=terminated, reason=bootstrap failed" in body
    assert (
        "Last 3 lines of the console output of i-0abc:\n"
        "  spottrain bootstrap: job s3://b attempt 1: fetching agent s3://assets/agent.zip\n"
    ) in body
    assert "  spottrain bootstrap: FAILED (exit 1) at line 32" in body
    assert "interrupted" not in body.lower() and "resuming" not in body.lower()


def waiting_launch() -> dict:
    pools = {
        "g5.xlarge/subnet-1": {
            "failures": 1,
            "code": "InsufficientInstanceCapacity",
            "failed_at": "2026-01-01T00:03:12+00:00",
            "retry_at": "2026-01-01T00:04:12+00:00",
        }
    }
    wait = {
        "started_at": "2026-01-01T00:03:12+00:00",
        "deadline": "2026-01-01T00:33:12+00:00",
        "waits": 1,
        "outcome": "WAITING",
    }
    return {
        "status": "WAITING",
        "attempt": 1,
        "instance": None,
        "pools": pools,
        "pools_failed": list(pools),
        "capacity_wait": wait,
        "capacity_wait_begins": True,
        "wait_seconds": 60,
    }


def test_given_no_pool_has_room_when_the_wait_begins_then_the_email_names_the_pools_and_the_deadline(running_job):
    # Given every pool refused and the job starts waiting
    state, _, inbox = running_job
    state["launch"] = waiting_launch()

    # When notified
    publish(NotifyEvent.CAPACITY_WAIT, state)

    # Then the one email says it waits, which pools refused and why, the next try and the deadline
    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade is waiting for spot capacity: no allowed pool has room"
    assert "Pools without capacity: g5.xlarge/subnet-1 (InsufficientInstanceCapacity)" in email["Message"]
    assert "next try in 1m00s" in email["Message"] and "until 2026-01-01T00:33:12+00:00" in email["Message"]


def test_given_capacity_found_after_a_wait_when_the_instance_starts_then_the_subject_says_how_long_it_waited(
    running_job,
):
    state, _, inbox = running_job
    state["launch"]["capacity_found_after_seconds"] = 95

    publish(NotifyEvent.REQUEST_FULFILLED, state)

    assert received(inbox)[0]["Subject"].endswith("in us-east-1a after a 1m35s capacity wait")


def test_given_the_policy_switched_to_on_demand_when_the_instance_starts_then_the_email_says_why(running_job):
    state, _, inbox = running_job
    state["launch"]["instance"]["lifecycle"] = "on-demand"
    state["launch"]["on_demand_reason"] = "2 spot interruption(s) reached on_demand_after.interruptions=2"

    publish(NotifyEvent.REQUEST_FULFILLED, state)

    email = received(inbox)[0]
    assert "(on-demand)" in email["Subject"]
    assert "On-demand because: 2 spot interruption(s) reached on_demand_after.interruptions=2" in email["Message"]


def test_given_the_wait_ran_out_when_notified_then_the_email_says_how_long_it_waited(running_job):
    state, _, inbox = running_job
    state["launch"] = waiting_launch() | {"status": "EXHAUSTED"}
    state["launch"]["capacity_wait"] |= {"waits": 9, "ended_at": "2026-01-01T00:33:12+00:00", "outcome": "GAVE_UP"}

    publish(NotifyEvent.REQUEST_FAILED, state)

    body = received(inbox)[0]["Message"]
    assert (
        "Waited for capacity from 2026-01-01T00:03:12+00:00 to 2026-01-01T00:33:12+00:00 (9 waits; "
        "capacity_wait_minutes sets how long)"
    ) in body


def test_given_an_interrupted_then_resumed_job_when_completed_then_the_email_shows_redone_work_and_volumes(running_job):
    # Given attempt 1 was interrupted 2.5 minutes after its last durable checkpoint, on a 100 GiB volume
    state, s3, inbox = running_job
    bucket = state["storage"]["bucket"]
    report.record_launch(s3, bucket, "pix2pix-facade", 1, INSTANCE | {"volume_gb": 100})
    report.record_end(s3, bucket, 1, "INTERRUPTED", ended_at=NOW, details={"redone_minutes": 2.5})
    state["poll"] = {"status": "SUCCEEDED", "detail": {"exit_code": 0}}

    # When the completion is notified
    publish(NotifyEvent.COMPLETED, state)

    # Then the email says how much training was done twice, and what the volumes cost
    body = received(inbox)[0]["Message"]
    assert "Training redone after interruptions: attempt 1: 2.5 min" in body
    assert "Root volumes (gp3, the same either way): $0.0006" in body  # 100 GiB x $0.08 per 730 h, for 192 s


def test_given_the_job_stopped_at_its_spend_cap_when_notified_then_cap_spent_and_kept_checkpoints(running_job):
    # Given the agent stopped the training at a $0.02 cap
    state, _, inbox = running_job
    state["job"]["checkpoint_dir"] = "checkpoints"
    state["poll"] = {
        "status": "FAILED",
        "spend_cap_reached": True,
        "spend_cap": {"cap_usd": 0.02, "spent_usd": 0.0213},
        "detail": {"exit_code": 143, "reason": "spend_cap", "failed_phase": "exec"},
    }

    # When the failure is emailed
    publish(NotifyEvent.FAILED, state)

    # Then the subject and body say the cap, the spend and what was kept
    email = received(inbox)[0]
    assert email["Subject"] == "[spottrain] pix2pix-facade stopped at its spend cap of $0.02 (spent $0.0213)"
    bucket = state["storage"]["bucket"]
    assert "Spend cap: limits.max_cost_usd = $0.02; spent $0.0213" in email["Message"]
    assert f"Kept: s3://{bucket}/checkpoints/, s3://{bucket}/output/" in email["Message"]


def test_given_a_secret_that_could_not_be_read_when_failed_then_the_subject_names_the_variable_not_exit_code_1(
    running_job,
):
    # Given the agent failed at start: the secret behind HF_TOKEN could not be read (its exit code is 1)
    state, s3, inbox = running_job
    state["poll"] = {
        "status": "FAILED",
        "detail": {
            "exit_code": 1,
            "failed_phase": "start",
            "reason": "secret_unreadable",
            "message": "secrets.HF_TOKEN: /spottrain/hf-token is neither an SSM parameter nor a Secrets Manager secret",
        },
    }

    # When the failure is notified
    publish(NotifyEvent.FAILED, state)

    # Then the subject says which secret could not be read
    subject = received(inbox)[0]["Subject"]
    assert subject.startswith("[spottrain] pix2pix-facade failed (secret HF_TOKEN could not be read)"), subject


def test_given_a_failed_clone_when_failed_then_the_subject_says_the_clone_failed_not_only_its_exit_code(running_job):
    # Given the agent failed in the clone phase: the host refused the deploy key (git's exit code 128)
    state, s3, inbox = running_job
    state["poll"] = {
        "status": "FAILED",
        "detail": {
            "exit_code": 128,
            "failed_phase": "clone",
            "reason": "clone_failed",
            "message": "git clone of ssh://***@github.com/acme/t.git failed with exit code 128: the server refused",
        },
    }

    # When the failure is notified
    publish(NotifyEvent.FAILED, state)

    # Then the subject says the clone failed, before any command ran
    subject = received(inbox)[0]["Subject"]
    assert subject.startswith("[spottrain] pix2pix-facade failed (git clone exit code 128)"), subject
