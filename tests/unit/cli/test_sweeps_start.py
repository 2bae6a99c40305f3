"""Starting a sweep (spottrain/sweeps.py) against a stack's two state machines, in moto (which runs nothing)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from moto import mock_aws

from spottrain import jobs, sweeps
from spottrain.contract import sweep as sweep_contract

ROLE = "arn:aws:iam::123456789012:role/r"
WAIT = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})
SPEC = {
    "exec_name": "lr",
    "repository_url": "https://example.com/r.git",
    "data_dir": "d",
    "output_dir": "o",
    "data_get_command": "true",
    "exec_command": "true",
    "sweep": {"grid": {"LR": ["0.1", "0.01"]}, "max_parallel": 1},
}


@pytest.fixture
def stack(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        sfn = boto3.client("stepfunctions")
        job = sfn.create_state_machine(name="job", definition=WAIT, roleArn=ROLE)["stateMachineArn"]
        sweep = sfn.create_state_machine(name="sweep", definition=WAIT, roleArn=ROLE)["stateMachineArn"]
        yield sfn, jobs.Stack(job, "topic", "bucket", "spottrain-1", "terminate", sweep_state_machine_arn=sweep)


def test_given_a_sweep_spec_when_started_then_the_sweep_machine_gets_each_variant_named_after_its_run(stack):
    sfn, found = stack
    arn = sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    assert arn.endswith(":sweep:lr-20261130T120000")
    started = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert started["max_parallel"] == 1
    assert [v["execution_name"] for v in started["variants"]] == ["lr-1-20261130T120000", "lr-2-20261130T120000"]
    # And before the Map starts a child, each variant reads as pending
    assert [row.status for row in sweeps.variant_states(sfn, found, arn)] == [sweeps.PENDING, sweeps.PENDING]
    assert sweeps.current(sfn, found, "lr")["executionArn"] == arn


def test_given_a_variant_already_running_as_a_job_when_the_sweep_starts_then_it_is_refused_and_nothing_starts(stack):
    sfn, found = stack
    sfn.start_execution(
        stateMachineArn=found.state_machine_arn,
        name="lr-2-20261130T110000",
        input=json.dumps({**SPEC, "exec_name": "lr-2"}),
    )
    with pytest.raises(jobs.JobAlreadyRunning, match="'lr-2', a variant of sweep 'lr'"):
        sweeps.start(sfn, found, SPEC)
    assert sfn.list_executions(stateMachineArn=found.sweep_state_machine_arn)["executions"] == []


def test_given_the_sweep_already_running_when_started_again_then_it_is_refused(stack):
    sfn, found = stack
    sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    with pytest.raises(jobs.JobAlreadyRunning, match="sweep 'lr' is already running"):
        sweeps.start(sfn, found, SPEC)


def test_given_a_stack_without_sweeps_when_a_sweep_starts_then_the_fix_is_to_redeploy(stack):
    sfn, found = stack
    old = jobs.Stack(found.state_machine_arn, "topic", "bucket", "spottrain-1", "terminate")
    with pytest.raises(jobs.JobNotFound, match="redeploy"):
        sweeps.start(sfn, old, SPEC)


class TerminateFunction:
    """The stack's terminate_instance Lambda as `jobs.cancel` calls it: records which jobs it was asked to clean."""

    def __init__(self):
        self.jobs: list[str] = []
        self.payloads: list[dict] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict:  # noqa: N803 - boto3's parameter names
        self.jobs.append(json.loads(Payload)["exec_name"])
        self.payloads.append(json.loads(Payload))
        return {}


def test_given_a_sweep_with_one_variant_started_when_cancelled_then_the_sweep_and_that_variant_stop(stack):
    sfn, found = stack
    arn = sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    # Given the Map state has started variant 1 only (max_parallel 1)
    child = sfn.start_execution(
        stateMachineArn=found.state_machine_arn,
        name="lr-1-20261130T120000",
        input=json.dumps({**SPEC, "exec_name": "lr-1"}),
    )["executionArn"]
    terminate = TerminateFunction()

    stopped = sweeps.cancel(sfn, terminate, found, "lr")

    assert stopped == ["lr-20261130T120000", "lr-1-20261130T120000"]
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert sfn.describe_execution(executionArn=child)["status"] == "ABORTED"
    assert terminate.jobs == ["lr-1"]  # its instances terminated; the unstarted variant 2 has none
    # And the terminate call names the run it stopped, for the CANCELLED email's "Execution:" line
    assert terminate.payloads[0]["execution"] == "lr-1-20261130T120000" and "emails" not in terminate.payloads[0]


@pytest.mark.parametrize("already_stopped", [False, True], ids=["child-running", "child-already-aborted"])
def test_given_a_summary_only_sweep_when_cancelled_then_the_variant_terminate_call_asks_for_no_email(
    stack, already_stopped
):
    sfn, found = stack
    spec = {**SPEC, "sweep": {**SPEC["sweep"], "emails": "summary"}}
    sweeps.start(sfn, found, spec, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    # Given the Map state started variant 1 with its child spec (emails false: the summary speaks for it)
    child_spec = next(v.spec for v in sweep_contract.variants(spec) if v.name == "lr-1")
    child = sfn.start_execution(
        stateMachineArn=found.state_machine_arn, name="lr-1-20261130T120000", input=json.dumps(child_spec)
    )["executionArn"]
    if already_stopped:  # as AWS does: stopping the sweep stops its .sync children before the CLI reaches them
        sfn.stop_execution(executionArn=child)
    terminate = TerminateFunction()

    sweeps.cancel(sfn, terminate, found, "lr")

    assert terminate.payloads == [
        {"exec_name": "lr-1", "reason": "cancelled", "execution": "lr-1-20261130T120000", "emails": False}
    ]


def test_given_a_sweep_when_its_status_is_asked_then_a_table_lists_each_variant(stack):
    import io

    from spottrain import sweep_commands

    class Out:
        stream = io.StringIO()

        def say(self, text: str = "") -> None:
            self.stream.write(text + "\n")

    sfn, found = stack
    sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    out = Out()
    assert sweep_commands.status(out, sfn, found, "lr") is True
    text = out.stream.getvalue()
    assert "lr-20261130T120000: RUNNING" in text and "lr-1" in text and "LR=0.01" in text and "PENDING" in text
    assert sweep_commands.status(out, sfn, found, "not-a-sweep") is False


class Printed:
    """The CLI console as sweep_commands uses it: say/error lines and the stream rich tables go to."""

    def __init__(self):
        import io

        self.stream = io.StringIO()

    def say(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    error = say


def test_given_a_cancelled_sweep_when_followed_then_it_says_cancelled_lists_final_states_and_leaves_no_stale_report(
    stack, tmp_path
):
    from spottrain import sweep_commands

    sfn, found = stack
    # Given an earlier run's report and plot in runs/lr/
    (tmp_path / "sweep-report.json").write_text("{}")
    (tmp_path / "sweep-comparison.png").write_bytes(b"old")
    # And a sweep cancelled with variant 1 started and variant 2 never started (so no report was written)
    arn = sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    sfn.start_execution(
        stateMachineArn=found.state_machine_arn,
        name="lr-1-20261130T120000",
        input=json.dumps({**SPEC, "exec_name": "lr-1"}),
    )
    sweeps.cancel(sfn, TerminateFunction(), found, "lr")
    out = Printed()

    # When `submit --wait` follows it to its end
    code = sweep_commands.follow(
        out, sfn, boto3.client("s3"), found, arn, "lr", timeout=5, interval=0.01, destination=tmp_path
    )

    # Then it says plainly the sweep was cancelled, with each variant's final state, and no botocore error
    text = out.stream.getvalue()
    assert code == 1 and "sweep lr was cancelled before it wrote sweep-report.json" in text
    assert "ABORTED" in text and "not started" in text and "NoSuchBucket" not in text
    # And the earlier run's report and plot are gone: nothing stale is left to be taken for this run's
    assert not (tmp_path / "sweep-report.json").exists() and not (tmp_path / "sweep-comparison.png").exists()


def test_given_a_stack_with_a_lower_cap_when_a_sweep_without_max_parallel_starts_then_the_map_runs_that_many(stack):
    # Given a stack deployed with maxSweepParallel 3 (its MaxSweepParallel output) and a 5-variant sweep
    sfn, found = stack
    capped = jobs.Stack.from_outputs(
        {
            "StateMachineArn": found.state_machine_arn,
            "TopicArn": "t",
            "BucketName": "b",
            "JobBucketPrefix": "spottrain-1",
            "TerminateFunctionName": "f",
            "SweepStateMachineArn": found.sweep_state_machine_arn,
            "MaxSweepParallel": "3",
        }
    )
    spec = {**SPEC, "sweep": {"grid": {"LR": ["1", "2", "3", "4", "5"]}}}
    out = Printed()
    # When it is submitted without --wait
    from spottrain import sweep_commands

    sweep_commands.submit(out, sfn, None, capped, spec, wait=False, timeout=None)
    # Then the Map state's MaxConcurrency is the stack's cap, and that is what the user is told
    (execution,) = sfn.list_executions(stateMachineArn=found.sweep_state_machine_arn)["executions"]
    assert json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])["max_parallel"] == 3
    assert "sweep of 5 variants, 3 at a time:" in out.stream.getvalue()


class LaggingChildren:
    """Step Functions as seen right after a sweep is stopped: each child reads RUNNING for its next
    `lag` DescribeExecution calls, then as it really is (AWS stops `.sync` children asynchronously)."""

    def __init__(self, sfn, lag: int):
        self.sfn, self.lag, self.exceptions = sfn, lag, sfn.exceptions

    def describe_execution(self, executionArn: str) -> dict:  # noqa: N803 - boto3's parameter names
        answer = self.sfn.describe_execution(executionArn=executionArn)
        if ":job:" in executionArn and self.lag > 0:
            self.lag -= 1
            return {**answer, "status": "RUNNING"}
        return answer


def test_given_a_child_still_stopping_when_the_cancelled_sweep_is_reported_then_its_final_state_is_shown(stack):
    sfn, found = stack
    arn = sweeps.start(sfn, found, SPEC, now=dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc))
    sfn.start_execution(
        stateMachineArn=found.state_machine_arn,
        name="lr-1-20261130T120000",
        input=json.dumps({**SPEC, "exec_name": "lr-1"}),
    )
    sweeps.cancel(sfn, TerminateFunction(), found, "lr")
    # When the ended sweep's variants are read while variant 1 still reads RUNNING for 3 more reads
    rows = sweeps.settled_states(LaggingChildren(sfn, lag=3), found, arn, timeout=60, interval=0)
    # Then the reading waits for it: its final ABORTED, and the unstarted variant "not started"
    assert [row.status for row in rows] == ["ABORTED", sweeps.NOT_STARTED]
