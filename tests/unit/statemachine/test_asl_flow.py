"""The state machine's graph: it is whole, it retries, it always cleans up, and its history grows with attempts only.

The first half reads the definition; the second runs it in moto's Step Functions interpreter (with the
emulator's CallbackBridge, so the callback wait answers as on AWS) with each Lambda replaced by a script
of answers, so the routing (Choice, Catch, SecondsPath, the callback wait's answers and timeouts) is
exercised by a real ASL executor, not by our reading of it.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Callable, NamedTuple

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from spottrain.local.bridge import CallbackBridge

ASL_PATH = Path(__file__).resolve().parents[3] / "statemachine" / "spottrain.asl.json"
ASL = json.loads(ASL_PATH.read_text())
STATES = ASL["States"]
FUNCTIONS = {
    "ValidateJob": "validate_job",
    "CreateBucket": "create_bucket",
    "RequestSpotInstance": "request_spot_instance",
    "CheckBid": "check_bid",
    "AwaitTraining": "await_training",
    "PollCompletion": "poll_completion",
    "Notify": "notify",
    "TerminateInstance": "terminate_instance",
}
TRANSIENT_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientError",
}
CLEANUP_CHAIN = ("TerminateOnError", "NotifyError", "JobErrored")
CATCH_ALL = {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TerminateOnError"}


def successors(name: str) -> list[str]:
    state = STATES[name]
    nexts = [state.get("Next"), state.get("Default")]
    nexts += [rule["Next"] for rule in state.get("Choices", [])]
    nexts += [clause["Next"] for clause in state.get("Catch", [])]
    return [n for n in nexts if n]


def reachable(start: str, avoid: Callable[[str], bool] = lambda name: False) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or avoid(name):
            continue
        seen.add(name)
        todo += successors(name)
    return seen


def with_arns(text: str) -> str:
    for state_prefix, function in FUNCTIONS.items():
        text = text.replace(
            "${%sFunctionArn}" % state_prefix, f"arn:aws:lambda:us-east-1:123456789012:function:{function}"
        )
    return text


# ----- the graph ---------------------------------------------------------------------------------


def test_every_transition_names_an_existing_state_and_none_is_unreachable():
    for name in STATES:
        for target in successors(name):
            assert target in STATES, f"{name} -> {target}"
    assert reachable(ASL["StartAt"]) == set(STATES)


def test_moto_parses_the_definition_so_the_emulator_can_run_it():
    AmazonStateLanguageParser.parse(with_arns(ASL_PATH.read_text()))


def test_every_task_retries_with_backoff_and_lambda_tasks_retry_every_transient_error():
    for name, state in STATES.items():
        if state["Type"] != "Task":
            continue
        assert state["Retry"] and all(r["BackoffRate"] > 1 and r["MaxAttempts"] >= 1 for r in state["Retry"]), name
        if state["Resource"].startswith("${") or "lambda:invoke" in state["Resource"]:
            assert TRANSIENT_ERRORS <= {e for r in state["Retry"] for e in r["ErrorEquals"]}, name


def test_every_task_from_the_launch_on_catches_into_terminate_then_notify():
    after_launch = reachable("RequestSpotInstance") - set(CLEANUP_CHAIN)
    for name in after_launch:
        if STATES[name]["Type"] == "Task":
            catch = STATES[name]["Catch"]
            assert catch[-1] == CATCH_ALL, name
            assert len(catch) == 1 or name == "WaitForTraining", name  # its answers go to PollCompletion first
    assert STATES["TerminateOnError"]["Next"] == "NotifyError" and STATES["NotifyError"]["Next"] == "JobErrored"
    assert STATES["CreateBucket"]["Catch"][0]["Next"] == "NotifyError"  # no instance can exist yet
    assert "Catch" not in STATES["ValidateJob"]  # a bad spec creates nothing and fails as InvalidJobSpec


def test_no_way_out_after_the_launch_skips_terminating_the_instance():
    # Without passing a Terminate* task, no end is reachable: not even RequestFailed, as an earlier attempt's
    # instance may still run after an interruption (its marker can be false) and the run's secrets role exists.
    ends = {
        n
        for n in reachable("RequestSpotInstance", avoid=lambda n: n.startswith("Terminate"))
        if STATES[n]["Type"] in ("Succeed", "Fail")
    }
    assert ends == set()


def test_every_wait_reads_its_duration_from_the_state():
    waits = {name: s for name, s in STATES.items() if s["Type"] == "Wait"}
    assert waits and all(set(s) == {"Type", "SecondsPath", "Next"} for s in waits.values())


def test_the_training_is_one_callback_wait_per_attempt_bounded_by_the_launchs_timeouts():
    wait = STATES["WaitForTraining"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait["Parameters"]["Payload"] == {"token.$": "$$.Task.Token", "state.$": "$"}
    assert (wait["HeartbeatSecondsPath"], wait["TimeoutSecondsPath"]) == (
        "$.launch.heartbeat_timeout_seconds",
        "$.launch.wait_timeout_seconds",
    )
    # No loop back into the wait: every way out of PollCompletion ends the attempt
    assert "WaitForTraining" not in reachable("PollCompletion", avoid=lambda n: n == "RequestSpotInstance")


# ----- running it: moto's interpreter, scripted Lambdas ------------------------------------------


class Script:
    """Per function, the answers it gives in turn (the last one repeats); records every call."""

    def __init__(self, **answers):
        self.answers = {name: list(value) if isinstance(value, list) else [value] for name, value in answers.items()}
        self.calls: dict[str, list[dict]] = defaultdict(list)

    def __call__(self, function: str, event: dict) -> tuple[str, bool]:
        self.calls[function].append(event)
        queue = self.answers.get(function, [None])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            return json.dumps({"errorType": type(answer).__name__, "errorMessage": str(answer)}), True
        if callable(answer):
            answer = answer(event)
        return json.dumps(answer), False


class TransientError(Exception):
    pass


class InvalidJobSpec(Exception):
    pass


def validated(event: dict) -> dict:
    return {"job": {"exec_name": "demo", **event["spec"]}, "execution": event["execution"]}


LAUNCHED = {
    "status": "LAUNCHED",
    "attempt": 1,
    "instance": {"instance_id": "i-1"},
    "pools_failed": [],
    "wait_seconds": 0,
    "capacity_wait_begins": False,
    "heartbeat_timeout_seconds": 30,
    "wait_timeout_seconds": 120,
}
COMPLETED = {"attempt": 1, "instance_id": "i-1", "execution": "arn", "outcome": "completed"}


def polled(status: str, **extra) -> dict:
    return {"status": status, "attempt": 1, "retry_allowed": True, "terminate_after_seconds": 0, "detail": {}} | extra


def answered(output: dict | None = None, error: str | None = None, heartbeats: int = 0) -> Callable[[dict], dict]:
    """await_training as the agent answers it: heartbeats, then success or failure, with the token it was given."""

    def answer(event: dict) -> dict:
        sfn = boto3.client("stepfunctions")
        for _ in range(heartbeats):
            sfn.send_task_heartbeat(taskToken=event["token"])
        if error:
            sfn.send_task_failure(taskToken=event["token"], error=error, cause=f"{error} on i-1")
        else:
            sfn.send_task_success(taskToken=event["token"], output=json.dumps(output or COMPLETED))
        return {"attempt": 1}

    return answer


def happy(**overrides) -> dict:
    return {
        "validate_job": validated,
        "create_bucket": {"bucket": "b", "job_key": "job.json"},
        "request_spot_instance": LAUNCHED,
        "check_bid": {"status": "FULFILLED", "code": "fulfilled", "checks": 1},
        "await_training": answered(),
        "poll_completion": polled("SUCCEEDED"),
        "notify": {"message_id": "m"},
        "terminate_instance": {},
    } | overrides


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def clients():
    """Built once (about a second each); moto's state is reset by each test's mock."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        yield boto3.client("iam"), boto3.client("lambda"), boto3.client("stepfunctions")


@pytest.fixture
def sfn(clients, monkeypatch):
    """Yields run(script, input, name) -> Outcome, against moto's executor."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), CallbackBridge():
        iam, lam, client = clients
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        for function in FUNCTIONS.values():
            lam.create_function(
                FunctionName=function,
                Runtime="python3.11",
                Role=role,
                Handler="handler.handler",
                Code={"ZipFile": code.getvalue()},
            )
        machine = client.create_state_machine(
            name="spottrain", definition=with_arns(ASL_PATH.read_text()), roleArn=role
        )["stateMachineArn"]
        script_holder: list[Script] = []
        monkeypatch.setattr(
            LambdaFunction, "_invoke_lambda", lambda self, event: (*script_holder[0](self.function_name, event), "")
        )

        def run(script: Script, execution_input: dict, name: str = "run-1") -> Outcome:
            script_holder[:] = [script]
            arn = client.start_execution(stateMachineArn=machine, name=name, input=json.dumps(execution_input))[
                "executionArn"
            ]
            return finished(client, arn)

        run.client, run.machine = client, machine
        yield run


class Outcome(NamedTuple):
    status: str
    error: str | None
    cause: str | None
    visited: list[str]


def finished(client, arn: str) -> Outcome:
    deadline = time.monotonic() + 30
    while (described := client.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.05)
    events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    visited = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return Outcome(described["status"], described.get("error"), described.get("cause"), visited)


SPEC = {"repository_url": "https://example.com/r.git"}


def test_given_a_bid_that_pends_once_when_training_succeeds_then_the_instance_is_terminated_and_it_succeeds(sfn):
    script = Script(**happy(check_bid=[{"status": "PENDING", "checks": 1}, {"status": "FULFILLED", "checks": 2}]))

    status, error, _, visited = sfn(script, SPEC)

    assert (status, error) == ("SUCCEEDED", None)
    assert visited == [
        "ValidateJob",
        "CreateBucket",
        "RequestSpotInstance",
        "LaunchResult",
        "WaitForBid",
        "CheckBid",
        "BidResult",
        "WaitForBid",
        "CheckBid",
        "BidResult",
        "NotifyRequestSuccess",
        "WaitForTraining",
        "PollCompletion",
        "TrainingResult",
        "NotifyTaskCompleted",
        "WaitBeforeTerminate",
        "TerminateInstance",
        "JobSucceeded",
    ]
    assert script.calls["await_training"][0]["state"]["launch"] == LAUNCHED  # the token comes with the whole state
    assert script.calls["poll_completion"][0]["wait"] == COMPLETED  # judged once, with the agent's answer
    assert [c["event"] for c in script.calls["notify"]] == ["REQUEST_FULFILLED", "COMPLETED"]
    assert script.calls["validate_job"][0]["spec"] == SPEC
    assert script.calls["validate_job"][0]["execution"]["name"] == "run-1"
    assert script.calls["check_bid"][0]["launch"] == LAUNCHED  # each task gets the whole state


def test_given_an_interruption_then_it_relaunches_and_notifies(sfn):
    script = Script(
        **happy(
            await_training=[answered(error="SpotInterrupted"), answered()],
            poll_completion=[polled("INTERRUPTED", retry_allowed=True), polled("SUCCEEDED")],
        )
    )

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED" and len(script.calls["request_spot_instance"]) == 2
    assert script.calls["poll_completion"][0]["wait"] == {"Error": "SpotInterrupted", "Cause": "SpotInterrupted on i-1"}
    assert script.calls["request_spot_instance"][1]["poll"]["status"] == "INTERRUPTED"
    assert [c["event"] for c in script.calls["notify"]] == [
        "REQUEST_FULFILLED",
        "INTERRUPTED",
        "REQUEST_FULFILLED",
        "COMPLETED",
    ]


def test_given_a_failed_bid_then_it_launches_again_without_notifying(sfn):
    script = Script(
        **happy(
            check_bid=[
                {"status": "FAILED", "code": "capacity-not-available", "checks": 1},
                {"status": "FULFILLED", "checks": 1},
            ]
        )
    )

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED" and len(script.calls["request_spot_instance"]) == 2
    assert script.calls["request_spot_instance"][1]["bid"]["status"] == "FAILED"


@pytest.mark.parametrize(
    "last_poll, error",
    [
        (polled("FAILED"), "TrainingFailed"),
        (polled("INTERRUPTED", retry_allowed=False), "AttemptsExhausted"),
        # limits.max_cost_usd: the agent stopped at the cap, or an interruption came with the cap already spent
        (polled("FAILED", spend_cap_reached=True), "SpendCapReached"),
        (polled("INTERRUPTED", retry_allowed=False, spend_cap_reached=True), "SpendCapReached"),
        (polled("FAILED", spend_cap_reached=False), "TrainingFailed"),
    ],
)
def test_given_the_training_fails_or_runs_out_of_attempts_then_terminated_and_failed(sfn, last_poll, error):
    script = Script(**happy(poll_completion=last_poll))

    status, got_error, _, visited = sfn(script, SPEC)

    assert (status, got_error) == ("FAILED", error)
    assert visited[-5:] == [
        "NotifyTaskFailed",
        "WaitBeforeTerminateAfterFailure",
        "TerminateAfterFailure",
        "FailureKind",
        error,
    ]


def test_given_a_failed_training_with_the_debug_door_then_it_waits_the_kept_seconds_before_terminating(sfn):
    # Given poll_completion's verdict for a job with on_failure.keep_alive_minutes (already in seconds)
    script = Script(**happy(poll_completion=polled("FAILED", terminate_after_seconds=1)))

    run = sfn(script, SPEC)

    # Then the instance is terminated only after the wait, and the job still fails
    assert (run.status, run.error) == ("FAILED", "TrainingFailed")
    events = sfn.client.get_execution_history(executionArn=_only_execution(sfn), maxResults=1000)["events"]
    entered = {e["stateEnteredEventDetails"]["name"]: e["timestamp"] for e in events if "stateEnteredEventDetails" in e}
    waited = entered["TerminateAfterFailure"] - entered["WaitBeforeTerminateAfterFailure"]
    assert waited.total_seconds() >= 1
    assert len(script.calls["terminate_instance"]) == 1


def _only_execution(sfn) -> str:
    return sfn.client.list_executions(stateMachineArn=sfn.machine)["executions"][0]["executionArn"]


def test_given_no_pool_with_room_twice_then_it_emails_once_waits_each_time_and_launches_when_one_has(sfn):
    # Given two launches that find no pool with room (the first begins the wait), then one that launches
    waiting = LAUNCHED | {"status": "WAITING", "instance": None, "wait_seconds": 0}
    script = Script(**happy(request_spot_instance=[waiting | {"capacity_wait_begins": True}, waiting, LAUNCHED]))

    # When the job runs
    status, _, _, visited = sfn(script, SPEC)

    # Then it waited twice, sent one "waiting" email, and trained once capacity was found
    assert status == "SUCCEEDED" and len(script.calls["request_spot_instance"]) == 3
    assert visited[2:10] == [
        "RequestSpotInstance",
        "LaunchResult",
        "NotifyCapacityWait",
        "WaitForCapacity",
        "RequestSpotInstance",
        "LaunchResult",
        "WaitForCapacity",
        "RequestSpotInstance",
    ]
    assert [c["event"] for c in script.calls["notify"]] == ["CAPACITY_WAIT", "REQUEST_FULFILLED", "COMPLETED"]


def test_given_every_pool_exhausted_then_no_spot_capacity_after_terminate_instance_cleans_up(sfn):
    script = Script(**happy(request_spot_instance=LAUNCHED | {"status": "EXHAUSTED", "instance": None}))

    status, error, _, _ = sfn(script, SPEC)

    assert (status, error) == ("FAILED", "NoSpotCapacity")
    assert [c["event"] for c in script.calls["notify"]] == ["REQUEST_FAILED"]
    # It terminates whatever an earlier attempt left (by the execution's tags) and deletes the run's secrets role
    assert len(script.calls["terminate_instance"]) == 1


def test_given_a_lambda_error_after_the_launch_then_terminate_notify_and_fail_with_that_error(sfn):
    script = Script(**happy(poll_completion=RuntimeError("boom")))

    status, error, cause, visited = sfn(script, SPEC)

    # Step Functions reserves "States." names (a caught timeout carries one), so the name is fixed
    # and the cause leads with the original error.
    assert (status, error) == ("FAILED", "JobErrored") and cause.startswith("RuntimeError: ")
    assert "boom" in cause
    assert visited[-4:] == ["PollCompletion", "TerminateOnError", "NotifyError", "JobErrored"]
    assert script.calls["terminate_instance"][0]["error"]["Error"] == "RuntimeError"
    assert script.calls["notify"][-1]["event"] == "ERROR"


def test_given_a_transient_error_then_the_task_is_retried_not_failed(sfn):
    script = Script(**happy(check_bid=[TransientError("throttled"), {"status": "FULFILLED", "checks": 1}]))

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED" and len(script.calls["check_bid"]) == 2


def test_given_an_invalid_spec_then_the_execution_fails_with_invalid_job_spec_and_creates_nothing(sfn):
    script = Script(**happy(validate_job=InvalidJobSpec("exec_name: must be lowercase")))

    status, error, _, _ = sfn(script, SPEC)

    assert (status, error) == ("FAILED", "InvalidJobSpec")
    assert set(script.calls) == {"validate_job"}


@pytest.mark.parametrize("error", ["InstanceLost", "TrainingFailed", "DiskFull", "AgentError", "SpendCap"])
def test_given_the_wait_fails_with_a_callback_error_then_poll_completion_judges_it(sfn, error):
    script = Script(**happy(await_training=answered(error=error), poll_completion=polled("FAILED")))

    status, got_error, _, visited = sfn(script, SPEC)

    assert (status, got_error) == ("FAILED", "TrainingFailed")
    assert visited[visited.index("WaitForTraining") + 1] == "PollCompletion"
    assert script.calls["poll_completion"][0]["wait"]["Error"] == error


def test_given_a_silent_agent_then_the_heartbeat_timeout_ends_the_wait_and_poll_completion_judges_it(sfn):
    # Given an agent that never answers, and a heartbeat timeout of 1 s
    script = Script(
        **happy(
            request_spot_instance=LAUNCHED | {"heartbeat_timeout_seconds": 1},
            await_training={"attempt": 1},
            poll_completion=polled("INTERRUPTED", retry_allowed=False),
        )
    )

    status, error, _, _ = sfn(script, SPEC)

    assert (status, error) == ("FAILED", "AttemptsExhausted")
    assert script.calls["poll_completion"][0]["wait"]["Error"] == "States.HeartbeatTimeout"


def test_given_an_answer_no_one_agreed_on_then_the_workflow_cleans_up_and_errors(sfn):
    script = Script(**happy(await_training=answered(error="Bogus")))

    status, error, cause, visited = sfn(script, SPEC)

    assert (status, error) == ("FAILED", "JobErrored") and cause.startswith("Bogus: ")
    assert visited[-4:] == ["WaitForTraining", "TerminateOnError", "NotifyError", "JobErrored"]


def test_given_await_training_fails_transiently_then_the_retry_waits_on_a_fresh_token(sfn):
    script = Script(**happy(await_training=[TransientError("throttled"), answered()]))

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED"
    first, second = (call["token"] for call in script.calls["await_training"])
    assert first != second


def test_history_grows_with_attempts_not_with_heartbeats(sfn):
    # Given the same job answered after no heartbeat and after 50 (about 25 minutes of an agent's beats)
    lengths = []
    for name, heartbeats in (("quiet", 0), ("busy", 50)):
        sfn(Script(**happy(await_training=answered(heartbeats=heartbeats))), SPEC, name=name)
        arn = sfn.machine.replace(":stateMachine:", ":execution:") + ":" + name
        lengths.append(len(sfn.client.get_execution_history(executionArn=arn, maxResults=1000)["events"]))

    # Then the histories are the same length: heartbeats add no events, however long the training
    assert lengths[0] == lengths[1]
