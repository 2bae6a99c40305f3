"""The emulator's bridge for a sweep's child executions (`startExecution.sync:2`, bridge item 8).

moto's own executor runs a Map state over child executions, as the sweep state machine does; without
the bridge every child start fails (States.Runtime) and a stopped parent leaves its children running.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from spottrain.local.bridge import NestedExecutionBridge

ROLE = "arn:aws:iam::123456789012:role/sweep"
CHILD = {
    "StartAt": "Hold",
    "States": {
        "Hold": {"Type": "Wait", "SecondsPath": "$.hold", "Next": "Outcome"},
        "Outcome": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Broke"}],
            "Default": "Done",
        },
        "Broke": {"Type": "Fail", "Error": "TrainingFailed", "Cause": "exit 1"},
        "Done": {"Type": "Succeed"},
    },
}


def parent(child_arn: str) -> dict:
    run = {
        "Type": "Task",
        "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child_arn, "Name.$": "$.name", "Input.$": "$.input"},
        "ResultSelector": {"status.$": "$.Status", "started.$": "$.StartDate", "stopped.$": "$.StopDate"},
        "ResultPath": "$.result",
        "End": True,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Collected"}],
    }
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrencyPath": "$.parallel",
                "End": True,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Run",
                    "States": {"Run": run, "Collected": {"Type": "Pass", "End": True}},
                },
            }
        },
    }


@pytest.fixture
def machines():
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), NestedExecutionBridge():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        child = sfn.create_state_machine(name="job", definition=json.dumps(CHILD), roleArn=ROLE)["stateMachineArn"]
        sweep = sfn.create_state_machine(name="sweep", definition=json.dumps(parent(child)), roleArn=ROLE)
        yield sfn, child, sweep["stateMachineArn"]


def until(check, what: str, limit: float = 60):
    deadline = time.monotonic() + limit  # a safety net: each check waits for an event, not a duration
    while not (found := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)
    return found


def ended(sfn, arn: str) -> dict | None:
    described = sfn.describe_execution(executionArn=arn)
    return described if described["status"] != "RUNNING" else None


def test_given_three_variants_one_failing_when_the_sweep_runs_then_each_child_ends_and_the_failure_is_collected(
    machines,
):
    sfn, child, sweep = machines
    items = [{"name": f"v-{n}", "input": {"hold": 0, "fail": n == 2}} for n in (1, 2, 3)]
    arn = sfn.start_execution(stateMachineArn=sweep, input=json.dumps({"items": items, "parallel": 2}))["executionArn"]
    done = until(lambda: ended(sfn, arn), "the sweep ended")
    assert done["status"] == "SUCCEEDED"
    results = json.loads(done["output"])
    assert [r.get("result", {}).get("status") for r in results] == ["SUCCEEDED", None, "SUCCEEDED"]
    # And the dates are epoch milliseconds, as AWS gives them (a datetime here broke moto's own DescribeExecution)
    assert 0 <= results[0]["result"]["stopped"] - results[0]["result"]["started"] < 60_000
    assert results[1]["error"]["Error"] == "States.TaskFailed" and '"TrainingFailed"' in results[1]["error"]["Cause"]
    children = {e["name"]: e["status"] for e in sfn.list_executions(stateMachineArn=child)["executions"]}
    assert children == {"v-1": "SUCCEEDED", "v-2": "FAILED", "v-3": "SUCCEEDED"}


def test_given_running_children_when_the_sweep_is_stopped_then_every_child_is_stopped_too(machines):
    sfn, child, sweep = machines
    items = [{"name": f"v-{n}", "input": {"hold": 3600, "fail": False}} for n in (1, 2)]
    arn = sfn.start_execution(stateMachineArn=sweep, input=json.dumps({"items": items, "parallel": 2}))["executionArn"]
    until(lambda: len(sfn.list_executions(stateMachineArn=child)["executions"]) == 2, "both children started")
    sfn.stop_execution(executionArn=arn)
    statuses = until(
        lambda: [
            e["status"] for e in sfn.list_executions(stateMachineArn=child)["executions"] if e["status"] != "RUNNING"
        ]
        or None,
        "children stopped",
    )
    until(
        lambda: all(e["status"] == "ABORTED" for e in sfn.list_executions(stateMachineArn=child)["executions"]),
        f"every child ABORTED (saw {statuses})",
    )
