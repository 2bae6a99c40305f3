"""The state machine and the Lambdas speak the same language: Choice values, error names, $. paths, placeholders.

The paths are checked against a state the real Lambdas built (validate_job, request_spot_instance,
check_bid, poll_completion against moto), not against a list someone typed: a renamed field fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

from spottrain.local.bridge import SpotMarket
from spottrain.contract import layout
from spottrain.contract.settings import Settings
from spottrain.contract.status import BidStatus, CallbackError, ErrorName, JobStatus, LaunchStatus, NotifyEvent
from spottrain.functions import check_bid, poll_completion, request_spot_instance, validate_job

ROOT = Path(__file__).resolve().parents[3]
ASL = json.loads((ROOT / "statemachine" / "spottrain.asl.json").read_text())
PLACEHOLDERS = {
    "ValidateJobFunctionArn",
    "CreateBucketFunctionArn",
    "RequestSpotInstanceFunctionArn",
    "CheckBidFunctionArn",
    "AwaitTrainingFunctionArn",
    "PollCompletionFunctionArn",
    "NotifyFunctionArn",
    "TerminateInstanceFunctionArn",
}
ENUM_OF_VARIABLE = {"$.launch.status": LaunchStatus, "$.bid.status": BidStatus, "$.poll.status": JobStatus}
STRING_COMPARISONS = ("StringEquals",)


def choice_rules(rule: dict) -> Iterator[dict]:
    """Every leaf comparison of a Choice rule, through And/Or/Not."""
    for combinator in ("And", "Or"):
        for child in rule.get(combinator, []):
            yield from choice_rules(child)
    if "Not" in rule:
        yield from choice_rules(rule["Not"])
    if "Variable" in rule:
        yield rule


def states_of(kind: str) -> dict[str, dict]:
    return {name: s for name, s in ASL["States"].items() if s["Type"] == kind}


def comparisons() -> Iterator[tuple[str, str, Any]]:
    for name, state in states_of("Choice").items():
        for rule in state["Choices"]:
            for leaf in choice_rules(rule):
                op = next(k for k in leaf if k not in ("Variable", "Next"))
                yield name, leaf["Variable"], (op, leaf[op])


def paths_read(node: Any, key: str = "") -> Iterator[str]:
    """JSONPaths the definition reads from the state ("$$." context paths and ResultPath writes excluded)."""
    if isinstance(node, dict):
        for child_key, value in node.items():
            if child_key in ("ResultPath", "Next", "Default", "Resource", "Comment"):
                continue
            yield from paths_read(value, child_key)
    elif isinstance(node, list):
        for item in node:
            yield from paths_read(item, key)
    elif (
        isinstance(node, str)
        and node.startswith("$.")
        and (key.endswith(".$") or key.endswith("Path") or key == "Variable")
    ):
        yield node


# ----- (a) Choice values are the shared enums, and every member is routed --------------------------


def test_every_choice_string_value_is_a_member_of_its_variables_enum():
    for state, variable, (op, value) in comparisons():
        if op in STRING_COMPARISONS:
            enum = ENUM_OF_VARIABLE[variable]
            assert value in {m.value for m in enum}, f"{state}: {variable} == {value!r} is not a {enum.__name__}"
        else:
            assert op in ("BooleanEquals", "IsPresent") and isinstance(value, bool), (state, variable, op)


@pytest.mark.parametrize(
    "state_name, variable",
    [("LaunchResult", "$.launch.status"), ("BidResult", "$.bid.status"), ("TrainingResult", "$.poll.status")],
)
def test_every_status_a_lambda_can_return_is_routed_by_its_choice(state_name, variable):
    handled = {value for name, var, (op, value) in comparisons() if name == state_name and var == variable}
    assert handled == {m.value for m in ENUM_OF_VARIABLE[variable]}
    assert ASL["States"][state_name]["Default"] == "UnexpectedStatus"


def test_notify_tasks_send_only_events_notify_knows():
    events = {s["Parameters"]["event"] for s in states_of("Task").values() if s["Resource"] == "${NotifyFunctionArn}"}
    assert events <= {e.value for e in NotifyEvent}
    assert events == {e.value for e in NotifyEvent} - {"CANCELLED"}  # CANCELLED comes from terminate_instance


# ----- (b) error names --------------------------------------------------------------------------


def test_every_retry_and_catch_error_name_is_shared_or_an_aws_name():
    ours = {e.value for e in ErrorName} | {e.value for e in CallbackError}
    for name, state in states_of("Task").items():
        for clause in state.get("Retry", []) + state.get("Catch", []):
            for error in clause["ErrorEquals"]:
                assert error in ours or re.fullmatch(r"(Lambda|States)\.\w+", error), f"{name}: {error}"


def test_every_callback_error_ends_the_wait_in_the_one_judgement_and_nothing_else_does():
    # Given the errors an agent or the EC2 handler may answer a wait with, and the two timeouts Step Functions raises
    wait = ASL["States"]["WaitForTraining"]
    judged, rest = wait["Catch"]

    # Then each goes to PollCompletion with the answer in $.wait; anything else is an error of the workflow
    assert set(judged["ErrorEquals"]) == {e.value for e in CallbackError} | {
        "States.HeartbeatTimeout",
        "States.Timeout",
    }
    assert (judged["Next"], judged["ResultPath"]) == ("PollCompletion", "$.wait")
    assert rest == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TerminateOnError"}


def test_every_fail_state_raises_a_shared_error_name():
    for name, state in states_of("Fail").items():
        assert state["Error"] in {e.value for e in ErrorName}, name


def test_the_lambdas_transient_error_is_the_class_the_retry_names():
    from spottrain.contract.status import TransientError

    assert TransientError.__name__ == ErrorName.TRANSIENT.value
    assert validate_job.InvalidJobSpec.__name__ == ErrorName.INVALID_JOB_SPEC.value


# ----- (c) every path the definition reads exists in a state the real Lambdas produced ------------


@pytest.fixture(scope="module")
def produced_state(tmp_path_factory) -> dict:
    """Run the Lambdas in flow order against moto and keep what each returned, as the ASL would."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch, mock_aws(), SpotMarket():  # moto lacks placement scores
        for name, value in env.items():
            patch.setenv(name, value)
        # The launch admits its instance to the bucket policy, whose conditioned Denies moto cannot evaluate
        from moto.s3.models import FakeBucket

        from spottrain.local.bridge import bucket_permission

        patch.setattr(FakeBucket, "get_permission", bucket_permission)
        ec2, s3 = boto3.client("ec2"), boto3.client("s3")
        template = ec2.create_launch_template(LaunchTemplateName="t", LaunchTemplateData={"ImageId": "ami-12c6146b"})
        settings = Settings(
            stack_name="Contract",
            bucket_prefix="spottrain-123456789012",
            launch_template_id=template["LaunchTemplate"]["LaunchTemplateId"],
            agent_bucket="spottrain-assets",
            agent_key="agent.zip",
        )
        spec = json.loads((ROOT / "examples" / "jobs" / "pix2pix.json").read_text())
        state = validate_job.build_state(
            {
                "spec": spec,
                "execution": {"id": "arn:exec:run-1", "name": "run-1", "started_at": "2026-01-01T00:00:00Z"},
            },
            settings,
        )
        s3.create_bucket(Bucket=state["job"]["bucket"])
        state["storage"] = {"bucket": state["job"]["bucket"], "job_key": layout.JOB_KEY}
        state["launch"] = request_spot_instance.request_instance(ec2, s3, settings, state)
        state["bid"] = check_bid.check_bid(ec2, s3, settings, state)
        s3.put_object(
            Bucket=state["job"]["bucket"],
            Key=layout.HEARTBEAT_KEY,
            Body=json.dumps(
                {"attempt": 1, "time": dt.datetime.now(dt.timezone.utc).isoformat(), "phase": "exec"}
            ).encode(),
        )
        state["poll"] = poll_completion.poll_completion(ec2, s3, settings, state)
    return state


def resolve(state: dict, path: str) -> Any:
    node: Any = state
    for part in path[2:].split("."):
        assert isinstance(node, dict) and part in node, f"{path}: no {part!r} in what the Lambdas produced"
        node = node[part]
    return node


def test_every_path_read_resolves_in_the_state_the_lambdas_produced(produced_state):
    # One key is not produced by a Lambda: the error a Catch writes.
    produced = produced_state | {"error": {"Error": "E", "Cause": "C"}}
    paths = set(paths_read(ASL))
    assert {
        "$.launch.status",
        "$.bid.status",
        "$.poll.status",
        "$.launch.heartbeat_timeout_seconds",
        "$.launch.wait_timeout_seconds",
    } <= paths
    for path in paths:
        resolve(produced, path)


def test_the_waits_timeouts_are_whole_seconds_from_the_launch(produced_state):
    for key in ("heartbeat_timeout_seconds", "wait_timeout_seconds"):
        seconds = produced_state["launch"][key]
        assert isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0, key


def test_every_wait_reads_a_whole_number_of_seconds_from_the_lambdas(produced_state):
    for name, state in states_of("Wait").items():
        seconds = resolve(produced_state, state["SecondsPath"])
        assert isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 0, name


def test_catch_writes_the_error_where_notify_and_the_fail_state_read_it():
    for name, state in states_of("Task").items():
        for clause in state.get("Catch", []):
            # The callback wait's answers go to PollCompletion (in $.wait), the one place that judges them.
            assert clause["ResultPath"] in ("$.error", None) or (name, clause["ResultPath"]) == (
                "WaitForTraining",
                "$.wait",
            ), name
    unexpected = ASL["States"]["UnexpectedStatus"]
    assert unexpected["ResultPath"] == "$.error" and set(unexpected["Result"]) == {"Error", "Cause"}


def test_each_task_writes_only_its_own_key_of_the_state():
    owners = {
        "${CreateBucketFunctionArn}": "$.storage",
        "${RequestSpotInstanceFunctionArn}": "$.launch",
        "${CheckBidFunctionArn}": "$.bid",
        "${PollCompletionFunctionArn}": "$.poll",
        "${ValidateJobFunctionArn}": "$",
        "arn:aws:states:::lambda:invoke.waitForTaskToken": "$.wait",
    }
    for name, state in states_of("Task").items():
        expected = owners.get(state["Resource"])  # notify and terminate write nothing
        assert state["ResultPath"] == expected, name


# ----- (d) placeholders ---------------------------------------------------------------------------


def test_every_placeholder_is_one_the_stack_substitutes_and_all_are_used():
    text = (ROOT / "statemachine" / "spottrain.asl.json").read_text()
    used = set(re.findall(r"\$\{([^}]*)\}", text))
    assert used == PLACEHOLDERS
