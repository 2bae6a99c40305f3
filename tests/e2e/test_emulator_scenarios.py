"""The workflow's recovery paths, end to end in one emulator: each fault AWS can throw at a spot job.

One emulator serves every scenario (starting one costs a deploy): faults are changed between jobs on
the running emulator, since its bridge and EC2 simulator read the same `Faults` object live. Each
job has its own exec_name, hence its own bucket, instances and emails. Only the interruption needs
the real training payload; the others prove their point with a one-line command. Every fault a
scenario injects must have fired, and every scenario ends with nothing left running: no instance,
no spot request, no process of a simulated instance on this machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from typing import Any, Callable, Iterator

import pytest

from spottrain.contract import layout
from e2e_support import assert_nothing_left_running, processes_under, wait_until
from spottrain.local import Emulator, Faults

log = logging.getLogger(__name__)

DEMO_EPOCHS = 3  # the demo spec's --epochs: 94 iterations at its data size and batch size
# A training command that daemonises a process out of its session, then trains "forever".
DAEMONISING_TRAINING = "setsid nohup sleep 600 >/dev/null 2>&1 & echo daemon started; sleep 600"


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(emulator_workdir) -> Iterator[Emulator]:
    with Emulator(emulator_workdir) as running:
        yield running
        # The failure, interruption and retry paths make calls the demo never does: IAM must allow them too
        gaps = running.permission_gaps()
        assert gaps == [], "\n".join(str(gap) for gap in gaps)


@pytest.fixture
def quick_job(demo_job) -> Callable[..., dict]:
    """A job that clones the local repo like the demo but runs a one-line command instead of training."""

    def make(exec_name: str, exec_command: str = "echo hi; sleep 1") -> dict:
        spec = {key: value for key, value in demo_job.items() if key not in ("setup_command", "checkpoint_dir")}
        return {**spec, "exec_name": exec_name, "data_get_command": "true", "exec_command": exec_command}

    return make


@contextlib.contextmanager
def faults(emulator: Emulator, *specs: str) -> Iterator[Faults]:
    """Inject faults for one job (CLI syntax, e.g. "no-capacity=g5.xlarge"), each of which must fire."""
    injected = emulator.inject(*specs)
    try:
        yield injected
        wait_until(lambda: not injected.pending(), timeout=60, what="the armed interruption's verdict")
        assert injected.never_fired() == []
    finally:
        emulator.inject()


@contextlib.contextmanager
def timed(record_property: Callable[[str, Any], None], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    seconds = round(time.monotonic() - started, 1)
    record_property(f"{name}_seconds", seconds)
    log.info("scenario %s took %.1fs", name, seconds)


# --- helpers ---------------------------------------------------------------------------------------


def job_emails(emulator: Emulator, exec_name: str, count: int, timeout: float = 15) -> list[dict]:
    """The job's emails (subjects start with "[spottrain] <exec_name> "), once `count` have arrived."""

    def arrived() -> list[dict]:
        emulator.wait_for_emails(len(emulator.emails) + 1, timeout=0.5)
        mine = [e for e in emulator.emails if e["subject"].startswith(f"[spottrain] {exec_name} ")]
        return mine if len(mine) >= count else []

    return wait_until(arrived, timeout, f"{count} emails for {exec_name}")


def job_instances(emulator: Emulator, exec_name: str) -> list[dict]:
    reservations = emulator.client("ec2").describe_instances(
        Filters=[{"Name": f"tag:{layout.TAG_JOB}", "Values": [exec_name]}]
    )["Reservations"]
    return sorted((i for r in reservations for i in r["Instances"]), key=lambda i: i["LaunchTime"])


def read_json(emulator: Emulator, bucket: str, key: str) -> dict:
    return json.loads(emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def output_tail(emulator: Emulator, bucket: str, attempt: int, lines: int = 8) -> list[str]:
    s3 = emulator.client("s3")
    prefix = layout.attempt_logs_prefix(attempt) + "output-"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
    text = s3.get_object(Bucket=bucket, Key=keys[-1])["Body"].read().decode(errors="replace") if keys else ""
    return text.splitlines()[-lines:]


def history(emulator: Emulator, execution_arn: str) -> list[dict]:
    sfn, events, token = emulator.client("stepfunctions"), [], None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, **({"nextToken": token} if token else {}))
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return sorted(events, key=lambda event: event["id"])


def daemon_started(emulator: Emulator, exec_name: str) -> bool:
    """The DAEMONISING_TRAINING of the job is under way: its heartbeat shows the line it prints."""
    try:
        heartbeat = read_json(emulator, emulator.stack.job_bucket(exec_name), layout.HEARTBEAT_KEY)
    except emulator.client("s3").exceptions.ClientError:
        return False
    return heartbeat.get("phase") == "exec" and heartbeat.get("last_log_line") == "daemon started"


def run_job(emulator: Emulator, spec: dict, timeout: float) -> dict:
    return emulator.wait(emulator.start_job(spec), timeout=timeout)


# --- scenarios -------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_given_no_capacity_for_the_first_type_when_the_job_runs_then_the_second_type_trains_it(
    emulator, quick_job, record_property
):
    job = quick_job("scenario-capacity")
    first, second = job["instance"]["types"][:2]
    with timed(record_property, "no_capacity"):
        # Given the first candidate type has no capacity
        with faults(emulator, f"no-capacity={first}"):
            # When the job runs
            final = run_job(emulator, job, timeout=180)

        # Then it succeeded on the second type, after recording the first pool as failed
        assert final["status"] == "SUCCEEDED", final.get("cause")
        state = json.loads(final["output"])
        assert any(pool.startswith(f"{first}/") for pool in state["launch"]["pools_failed"]), state["launch"]
        assert [i["InstanceType"] for i in job_instances(emulator, "scenario-capacity")] == [second]
        # And the report and the success email name the type that ran
        report = read_json(emulator, state["storage"]["bucket"], layout.REPORT_KEY)
        assert [a["instance_type"] for a in report["attempts"]] == [second]
        completed = [e for e in job_emails(emulator, "scenario-capacity", 2) if " completed" in e["subject"]]
        assert completed and second in completed[0]["subject"], [e["subject"] for e in emulator.emails]
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(420)
def test_given_a_spot_interruption_mid_training_when_the_job_runs_then_it_resumes_from_its_checkpoint(
    emulator, demo_job, record_property
):
    job = {**demo_job, "exec_name": "scenario-interrupted"}
    with timed(record_property, "interruption"):
        # Given a training job whose spot instance gets the interruption notice once its first
        # checkpoint is in S3
        with faults(emulator, "interrupt-at=checkpoint"):
            # When the job runs
            final = run_job(emulator, job, timeout=300)

        # Then it completed on a second instance after the first was interrupted
        assert final["status"] == "SUCCEEDED", final.get("cause")
        bucket = json.loads(final["output"])["storage"]["bucket"]
        report = read_json(emulator, bucket, layout.REPORT_KEY)
        outcomes = [(a["attempt"], a["outcome"]) for a in report["attempts"]]
        assert outcomes == [(1, "INTERRUPTED"), (2, "SUCCEEDED")], f"{outcomes}: the notice did not stop attempt 1"
        assert len(job_instances(emulator, "scenario-interrupted")) == 2
        # And the second attempt resumed the first one's checkpoint
        metrics = read_json(emulator, bucket, "output/metrics.json")
        assert (metrics["resumed_from_iteration"] or 0) > 0, (
            "attempt 2 did not resume; attempt 1's output ended with:\n"
            + "\n".join(output_tail(emulator, bucket, attempt=1))
        )
        # And trained exactly as many iterations as an uninterrupted run: nothing lost, nothing repeated
        uninterrupted = math.ceil(DEMO_EPOCHS * metrics["train_examples"] / metrics["batch_size"])
        assert (metrics["epochs"], metrics["iterations"]) == (DEMO_EPOCHS, uninterrupted), metrics
        assert metrics["resumed_from_iteration"] < uninterrupted
        # And the user heard of the interruption, the relaunch and the completion
        subjects = [e["subject"] for e in job_emails(emulator, "scenario-interrupted", 4)]
        assert any("interrupted" in s and "resuming" in s for s in subjects), subjects
        assert any("started" in s and "attempt 2/" in s for s in subjects), subjects
        assert any("completed" in s for s in subjects), subjects
        record_property("resumed_from_iteration", metrics["resumed_from_iteration"])
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(240)
def test_given_a_training_that_daemonised_when_the_job_is_cancelled_then_no_process_is_left(
    emulator, quick_job, record_property
):
    with timed(record_property, "cancel"):
        # Given a training that left a process outside its session and trains on
        arn = emulator.start_job(quick_job("scenario-cancel", DAEMONISING_TRAINING))
        wait_until(lambda: daemon_started(emulator, "scenario-cancel"), 120, "the daemonising training")
        assert processes_under(emulator.run_dir / "instances")

        # When the user cancels the job
        emulator.cancel("scenario-cancel")

        # Then the execution was aborted, and the instance took every process with it
        assert emulator.wait(arn, timeout=60)["status"] == "ABORTED"
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(300)
def test_given_a_workflow_error_during_training_when_the_job_fails_then_no_process_is_left(
    emulator, quick_job, record_property
):
    with timed(record_property, "workflow_error"):
        # Given a training that daemonised, and an AwaitTraining (arming the wait) that fails more often than
        # it is retried
        with faults(emulator, "lambda-error=AwaitTraining:6"):
            arn = emulator.start_job(quick_job("scenario-error", DAEMONISING_TRAINING))
            wait_until(lambda: daemon_started(emulator, "scenario-error"), 120, "the daemonising training")
            # When the workflow gives up on it, after retrying AwaitTraining with backoff (about a minute)
            final = emulator.wait(arn, timeout=180)

        # Then the job failed through its error path, which terminated the instance and all it ran
        assert final["status"] == "FAILED", final
        entered = [
            e["stateEnteredEventDetails"]["name"]
            for e in history(emulator, final["executionArn"])
            if e.get("stateEnteredEventDetails")
        ]
        assert "TerminateOnError" in entered, entered
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(240)
def test_given_a_command_that_fails_when_the_job_runs_then_failed_with_log_tail_and_exit_code_emailed(
    emulator, quick_job, record_property
):
    # Given a training command that prints a few lines, then exits 3
    lines = ["loading batch 1", "loss went NaN at step 7", "giving up"]
    job = quick_job("scenario-failing", "; ".join(f"echo '{line}'" for line in lines) + "; exit 3")
    with timed(record_property, "failing_command"):
        # When the job runs
        final = run_job(emulator, job, timeout=180)

        # Then the execution failed with TrainingFailed
        assert (final["status"], final.get("error")) == ("FAILED", "TrainingFailed"), final
        # And the failure email gives the exit code and the output's last lines
        failed = [e for e in job_emails(emulator, "scenario-failing", 2) if " failed" in e["subject"]]
        assert failed, [e["subject"] for e in emulator.emails]
        assert "exit code 3" in failed[0]["subject"]
        body_lines = [line.strip() for line in failed[0]["body"].splitlines()]
        assert all(line in body_lines for line in lines), failed[0]["body"]
        # And its instance is terminated
        assert {i["State"]["Name"] for i in job_instances(emulator, "scenario-failing")} == {"terminated"}
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(120)
def test_given_an_invalid_spec_when_submitted_then_it_fails_at_validation_and_creates_nothing(
    emulator, quick_job, record_property
):
    # Given a spec asking for an instance type the stack does not allow
    job = {**quick_job("scenario-invalid"), "instance": {"types": ["p4d.24xlarge"]}}
    with timed(record_property, "invalid_spec"):
        # When it is submitted
        final = run_job(emulator, job, timeout=60)

        # Then the execution fails with InvalidJobSpec, the cause naming the field
        assert (final["status"], final.get("error")) == ("FAILED", "InvalidJobSpec"), final
        assert "instance.types[0]" in final.get("cause", ""), final.get("cause")
        # And it failed at validation: no other task ran, no bucket, no instance
        entered = [
            e["stateEnteredEventDetails"]["name"]
            for e in history(emulator, final["executionArn"])
            if e.get("stateEnteredEventDetails")
        ]
        assert entered[-1] == "ValidateJob", entered
        buckets = {b["Name"] for b in emulator.client("s3").list_buckets()["Buckets"]}
        assert emulator.stack.job_bucket("scenario-invalid") not in buckets
        assert job_instances(emulator, "scenario-invalid") == []
        assert_nothing_left_running(emulator)


@pytest.mark.timeout(240)
def test_given_a_transient_lambda_error_when_the_job_runs_then_the_task_is_retried_and_the_job_succeeds(
    emulator, quick_job, record_property
):
    job = quick_job("scenario-retry")
    with timed(record_property, "lambda_retry"):
        # Given the first PollCompletion invocation fails with a Lambda service error
        with faults(emulator, "lambda-error=PollCompletion:1") as injected:
            # When the job runs
            final = run_job(emulator, job, timeout=180)
            assert injected.lambda_errors == {"PollCompletion": 0}, "the Lambda error fault never fired"

        # Then it succeeded
        assert final["status"] == "SUCCEEDED", final.get("cause")
        # And the history shows the failed invocation, retried into a success of the same task
        events = history(emulator, final["executionArn"])
        failed = [e for e in events if e["type"] == "LambdaFunctionFailed"]
        assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == ["Lambda.ServiceException"], failed
        entered = [e for e in events if e.get("stateEnteredEventDetails") and e["id"] < failed[0]["id"]]
        assert entered[-1]["stateEnteredEventDetails"]["name"] == "PollCompletion", entered[-1]
        after = [e for e in events if e["id"] > failed[0]["id"]]
        types = [e["type"] for e in after]
        assert "LambdaFunctionSucceeded" in types, types
        # the retry succeeded inside the same state: no state was left before it
        assert not any(t.endswith("StateExited") for t in types[: types.index("LambdaFunctionSucceeded")]), types
        assert_nothing_left_running(emulator)


# --- an agent that dies or hangs: the callback wait notices without polling -----------------------

# Attempt 1 trains "forever" (until its agent is killed or frozen); attempt 2 finishes at once.
FIRST_ATTEMPT_HANGS = (
    'if [ "$SPOTTRAIN_ATTEMPT" = 1 ]; then echo training started; sleep 600; else echo resumed and done; fi'
)


def training_started(emulator: Emulator, exec_name: str) -> bool:
    try:
        heartbeat = read_json(emulator, emulator.stack.job_bucket(exec_name), layout.HEARTBEAT_KEY)
    except emulator.client("s3").exceptions.ClientError:
        return False
    return (heartbeat.get("attempt"), heartbeat.get("phase"), heartbeat.get("last_log_line")) == (
        1,
        "exec",
        "training started",
    )


def agent_pid(emulator: Emulator, exec_name: str) -> int:
    """The agent process of the job's first instance (python -m spottrain.agent), found among its processes."""
    (instance_id,) = [i["InstanceId"] for i in job_instances(emulator, exec_name)][:1]
    for pid in emulator.ec2.instances[instance_id].tracked.pids():
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"spottrain.agent" in cmdline:
            return pid
    raise AssertionError(f"no agent process on {instance_id}")


def judged_waits(emulator: Emulator, execution_arn: str) -> list[dict]:
    """How each attempt's wait ended, as PollCompletion received it ($.wait)."""
    return [
        json.loads(e["stateEnteredEventDetails"]["input"]).get("wait")
        for e in history(emulator, execution_arn)
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "PollCompletion"
    ]


def waited_seconds(emulator: Emulator, execution_arn: str, since: float) -> float:
    """Seconds from `since` (epoch) to the end of attempt 1's wait (PollCompletion entered)."""
    entered = next(
        e
        for e in history(emulator, execution_arn)
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "PollCompletion"
    )
    return entered["timestamp"].timestamp() - since


@pytest.mark.timeout(300)
def test_given_the_agent_killed_mid_training_then_the_instance_loss_ends_the_wait_and_the_job_relaunches(
    emulator, quick_job, record_property
):
    job = {**quick_job("scenario-agent-killed", FIRST_ATTEMPT_HANGS), "limits": {"max_attempts": 2}}
    # Given a job training on its first instance
    arn = emulator.start_job(job)
    wait_until(lambda: training_started(emulator, job["exec_name"]), 120, "attempt 1's training")

    # When its agent is killed outright (no marker, no answer: the instance shuts down without it)
    killed_at = time.time()
    os.kill(agent_pid(emulator, job["exec_name"]), signal.SIGKILL)
    final = emulator.wait(arn, timeout=180)

    # Then the EC2 state change answered the wait (InstanceLost), not the heartbeat timeout, and the
    # attempt was judged interrupted and relaunched; the second attempt finished the job
    assert final["status"] == "SUCCEEDED", final.get("cause")
    first_wait = judged_waits(emulator, arn)[0]
    assert first_wait["Error"] == "InstanceLost" and "instance i-" in first_wait["Cause"], first_wait
    report = read_json(emulator, emulator.stack.job_bucket(job["exec_name"]), layout.REPORT_KEY)
    assert [(a["attempt"], a["outcome"]) for a in report["attempts"]] == [(1, "INTERRUPTED"), (2, "SUCCEEDED")]
    record_property("agent_killed_to_judged_seconds", round(waited_seconds(emulator, arn, killed_at), 1))
    assert_nothing_left_running(emulator)


@pytest.mark.timeout(300)
def test_given_the_agent_frozen_mid_training_then_the_heartbeat_timeout_ends_the_wait_terminates_and_relaunches(
    emulator, quick_job, record_property
):
    job = {**quick_job("scenario-agent-frozen", FIRST_ATTEMPT_HANGS), "limits": {"max_attempts": 2}}
    # Given a job training on its first instance
    arn = emulator.start_job(job)
    wait_until(lambda: training_started(emulator, job["exec_name"]), 120, "attempt 1's training")
    first_instance = job_instances(emulator, job["exec_name"])[0]["InstanceId"]

    # When its agent freezes (SIGSTOP): the instance runs on, silent
    frozen_at = time.time()
    os.kill(agent_pid(emulator, job["exec_name"]), signal.SIGSTOP)
    final = emulator.wait(arn, timeout=180)

    # Then the heartbeat timeout ended the wait, the silent instance was terminated, and attempt 2 finished
    assert final["status"] == "SUCCEEDED", final.get("cause")
    assert judged_waits(emulator, arn)[0]["Error"] == "States.HeartbeatTimeout"
    states = {i["InstanceId"]: i["State"]["Name"] for i in job_instances(emulator, job["exec_name"])}
    assert states[first_instance] == "terminated" and len(states) == 2
    report = read_json(emulator, emulator.stack.job_bucket(job["exec_name"]), layout.REPORT_KEY)
    assert [(a["attempt"], a["outcome"]) for a in report["attempts"]] == [(1, "INTERRUPTED"), (2, "SUCCEEDED")]
    record_property("agent_frozen_to_judged_seconds", round(waited_seconds(emulator, arn, frozen_at), 1))
    assert_nothing_left_running(emulator)
