"""Sweeps end to end in the emulator: the real sweep and job state machines, Lambdas and simulated instances.

A 16-variant sweep of a one-line command, 4 at a time: every child ends, never more than 4 run at once,
the report lists all 16, and nothing is left (no instance, no process). And a sweep stopped with
StopExecution alone stops its running children (whose own clean-up terminates their instances) and never
starts the rest.
"""

from __future__ import annotations

import json

import pytest

from e2e_support import assert_nothing_left_running, git_repository, wait_until
from spottrain import jobs, sweeps
from spottrain.contract import sweep
from spottrain.local import Emulator

QUICK = 'echo variant $VARIANT; mkdir -p result; echo "{\\"score\\": $VARIANT}" > result/metrics.json'


def sweep_spec(repo_url: str, exec_name: str, exec_command: str, grid: dict, max_parallel: int) -> dict:
    return {
        "exec_name": exec_name,
        "repository_url": repo_url,
        "repository_name": "sweep-repo",
        "repository_ref": "main",
        "data_dir": "data",
        "output_dir": "result",
        "data_get_command": "true",
        "exec_command": exec_command,
        "limits": {"max_attempts": 1},
        "sweep": {"grid": grid, "max_parallel": max_parallel, "metric": "score", "goal": "max"},
    }


@pytest.fixture
def sweep_repo(tmp_path):
    return git_repository(tmp_path / "sweep-repo", {"README": "a sweep's job\n"}).as_uri()


def most_overlapping(sfn, state_machine_arn: str, prefix: str) -> int:
    """The most executions named `prefix...` that ran at the same time, by their startDate/stopDate."""
    executions = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    events = []
    for execution in executions:
        if execution["name"].startswith(prefix):
            events += [(execution["startDate"], 1), (execution["stopDate"], -1)]
    running = most = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):  # a stop before a start at one instant
        running += change
        most = max(most, running)
    return most


@pytest.mark.timeout(1500)
def test_given_16_variants_4_at_a_time_when_the_sweep_runs_then_all_end_never_over_4_and_nothing_is_left(
    emulator_workdir, sweep_repo
):
    spec = sweep_spec(sweep_repo, "wide", QUICK, {"VARIANT": [str(n) for n in range(16)]}, max_parallel=4)
    with Emulator(emulator_workdir) as emulator:
        sfn, s3 = emulator.client("stepfunctions"), emulator.client("s3")
        stack = jobs.Stack.from_outputs(emulator.outputs)
        arn = sweeps.start(sfn, stack, spec)
        most_at_once = 0

        def watch(rows: list[sweeps.VariantState]) -> None:
            nonlocal most_at_once
            most_at_once = max(most_at_once, sum(row.status == "RUNNING" for row in rows))

        final = sweeps.wait(sfn, stack, arn, timeout=1400, on_change=watch, interval=0.5)

        assert final["status"] == "SUCCEEDED"
        rows = sweeps.variant_states(sfn, stack, arn)
        assert [row.status for row in rows] == ["SUCCEEDED"] * 16
        # never more than 4 at once, from the children's own start and stop times (a sampled count of RUNNING
        # rows can see a child that just ended next to the one that replaced it, on a slow machine)
        assert most_at_once >= 1
        assert 1 <= most_overlapping(sfn, stack.state_machine_arn, "wide-") <= 4
        report = json.loads(
            s3.get_object(Bucket=sweep.sweep_bucket(stack.job_bucket_prefix, "wide"), Key=sweep.REPORT_KEY)[
                "Body"
            ].read()
        )
        assert [row["name"] for row in report["variants"]] == [f"wide-{n}" for n in range(1, 17)]
        assert report["best"] == "wide-16" and report["variants"][15]["metric"] == 15
        assert any(
            email["subject"].startswith("spottrain sweep wide: 16/16 succeeded")
            for email in emulator.wait_for_emails(1, timeout=15)
        )
        assert_nothing_left_running(emulator, instance_seconds=60)
        assert emulator.permission_gaps() == []


@pytest.mark.timeout(600)
def test_given_a_running_sweep_when_stopped_then_children_stop_instances_end_and_the_rest_never_start(
    emulator_workdir, sweep_repo
):
    spec = sweep_spec(sweep_repo, "halted", "sleep 600", {"VARIANT": ["1", "2", "3"]}, max_parallel=2)
    with Emulator(emulator_workdir) as emulator:
        sfn = emulator.client("stepfunctions")
        stack = jobs.Stack.from_outputs(emulator.outputs)
        arn = sweeps.start(sfn, stack, spec)
        wait_until(
            lambda: sum(instance.alive for instance in emulator.ec2.instances.values()) == 2,
            timeout=300,
            what="two variants' instances running",
        )

        # When the sweep execution alone is stopped, as the console or `aws stepfunctions stop-execution` would
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause="test")

        wait_until(
            lambda: sfn.describe_execution(executionArn=arn)["status"] == "ABORTED",
            timeout=30,
            what="the sweep ABORTED",
        )
        wait_until(
            lambda: [row.status for row in sweeps.variant_states(sfn, stack, arn)]
            == ["ABORTED", "ABORTED", sweeps.PENDING],
            timeout=60,
            what="both children stopped, the third unstarted",
        )
        assert_nothing_left_running(emulator, instance_seconds=60)
