"""The state machine's graph: it is whole, it retries, it always cleans up, and it stays under the history cap.

The first half reads the definition; the second runs it in moto's Step Functions interpreter with each
Lambda replaced by a script of answers, so the routing (Choice, Catch, SecondsPath, ErrorPath, the
hand-over) is exercised by a real ASL executor, not by our reading of it.
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
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from spottrain.functions import poll_completion
from spottrain.contract.defaults import STACK_DEFAULTS
from spottrain.contract.settings import Settings

ASL_PATH = Path(__file__).resolve().parents[3] / "statemachine" / "spottrain.asl.json"
ASL = json.loads(ASL_PATH.read_text())
STATES = ASL["States"]
FUNCTIONS = {"ValidateJob": "validate_job", "CreateBucket": "create_bucket", "RequestSpotInstance": "request_spot_instance",
             "CheckBid": "check_bid", "PollCompletion": "poll_completion", "Notify": "notify",
             "TerminateInstance": "terminate_instance"}
TRANSIENT_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                    "Lambda.TooManyRequestsException", "TransientError"}
CLEANUP_CHAIN = ("TerminateOnError", "NotifyError", "JobErrored")
HISTORY_EVENT_CAP = 25_000
# History events each state adds in Step Functions (entered + exited; a Lambda task adds scheduled,
# started and succeeded between them: https://docs.aws.amazon.com/step-functions/latest/apireference/API_HistoryEvent.html).
EVENTS_PER_STATE = {"Task": 5, "Wait": 2, "Choice": 2, "Pass": 2}


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
        text = text.replace("${%sFunctionArn}" % state_prefix,
                            f"arn:aws:lambda:us-east-1:123456789012:function:{function}")
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
        if state["Resource"].startswith("${"):
            assert TRANSIENT_ERRORS <= {e for r in state["Retry"] for e in r["ErrorEquals"]}, name


def test_every_task_from_the_launch_on_catches_into_terminate_then_notify():
    after_launch = reachable("RequestSpotInstance") - set(CLEANUP_CHAIN)
    for name in after_launch:
        if STATES[name]["Type"] == "Task":
            catch = STATES[name]["Catch"]
            assert catch == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TerminateOnError"}], name
    assert STATES["TerminateOnError"]["Next"] == "NotifyError" and STATES["NotifyError"]["Next"] == "JobErrored"
    assert STATES["CreateBucket"]["Catch"][0]["Next"] == "NotifyError"  # no instance can exist yet
    assert "Catch" not in STATES["ValidateJob"]  # a bad spec creates nothing and fails as InvalidJobSpec


def test_no_way_out_after_the_launch_skips_terminating_the_instance():
    # Without passing a Terminate* task, only two ends are reachable: nothing was launched
    # (RequestFailed), or a fresh execution took the instance over (HandedOver).
    ends = {n for n in reachable("RequestSpotInstance", avoid=lambda n: n.startswith("Terminate"))
            if STATES[n]["Type"] in ("Succeed", "Fail")}
    assert ends == {"RequestFailed", "HandedOver"}


def test_every_wait_reads_its_duration_from_the_state():
    waits = {name: s for name, s in STATES.items() if s["Type"] == "Wait"}
    assert waits and all(set(s) == {"Type", "SecondsPath", "Next"} for s in waits.values())


# ----- the history budget ------------------------------------------------------------------------

def poll_cycle_events() -> int:
    """Events one RUNNING poll costs: WaitForTraining -> PollCompletion -> TrainingResult -> back."""
    cycle, name = [], "WaitForTraining"
    while not cycle or name != "WaitForTraining":
        cycle.append(name)
        rule = next((r for r in STATES[name].get("Choices", [])
                     if r.get("StringEquals") == "RUNNING" and "Variable" in r), None)
        name = rule["Next"] if rule else STATES[name]["Next"]
    assert cycle == ["WaitForTraining", "PollCompletion", "TrainingResult"]
    return sum(EVENTS_PER_STATE[STATES[n]["Type"]] for n in cycle)


def test_one_poll_costs_nine_events_and_a_full_execution_stays_well_below_the_cap():
    settings = Settings(stack_name="s", bucket_prefix="p")
    per_poll = poll_cycle_events()
    # Worst case before polling: 3 types x 6 subnets, each bid checked to its limit, on every attempt.
    bid_cycle = EVENTS_PER_STATE["Wait"] + EVENTS_PER_STATE["Task"] + EVENTS_PER_STATE["Choice"]
    launches = 3 * 6 + settings.max_attempts
    per_launch = EVENTS_PER_STATE["Task"] + EVENTS_PER_STATE["Choice"] + settings.bid_max_checks * bid_cycle
    overhead = 40 + launches * per_launch + settings.max_attempts * 4 * EVENTS_PER_STATE["Task"]
    worst = settings.polls_per_execution * per_poll + overhead

    assert per_poll == 9
    assert worst < 0.8 * HISTORY_EVENT_CAP, worst


def test_default_settings_hand_over_before_the_execution_times_out_and_watch_a_whole_attempt():
    settings = Settings(stack_name="s", bucket_prefix="p")
    job_timeout_seconds = STACK_DEFAULTS["jobTimeoutHours"] * 3600
    watched = sum(poll_completion.next_wait(settings, k) for k in range(settings.polls_per_execution - 1))
    # 148,521 s (41.3 h) of waits per execution: a hand-over comes well before the 48 h timeout ...
    assert watched == 148_521
    assert watched + settings.polls_per_execution * 5 < job_timeout_seconds  # 5 s per poll task, generously
    # ... and one execution still watches a whole attempt at the default 24 h runtime cap.
    assert watched > settings.max_runtime_minutes * 60


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
    return {"job": {"exec_name": "demo", **event["spec"]},
            "execution": {**event["execution"], "first_id": event["execution"]["id"], "handovers": 0}}


LAUNCHED = {"status": "LAUNCHED", "attempt": 1, "instance": {"instance_id": "i-1"}, "pools_failed": [], "wait_seconds": 0}


def polled(status: str, **extra) -> dict:
    return {"status": status, "wait_seconds": 0, "polls": 1, "attempt": 1, "handover": False, "handover_name": None,
            "handovers": 0, "retry_allowed": True, "terminate_after_seconds": 0, "detail": {}} | extra


def happy(**overrides) -> dict:
    return {"validate_job": validated, "create_bucket": {"bucket": "b", "job_key": "job.json"},
            "request_spot_instance": LAUNCHED, "check_bid": {"status": "FULFILLED", "code": "fulfilled", "checks": 1},
            "poll_completion": polled("SUCCEEDED"), "notify": {"message_id": "m"}, "terminate_instance": {}} | overrides


FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


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
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        iam, lam, client = clients
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        for function in FUNCTIONS.values():
            lam.create_function(FunctionName=function, Runtime="python3.11", Role=role, Handler="handler.handler",
                                Code={"ZipFile": code.getvalue()})
        machine = client.create_state_machine(name="spottrain", definition=with_arns(ASL_PATH.read_text()),
                                              roleArn=role)["stateMachineArn"]
        script_holder: list[Script] = []
        monkeypatch.setattr(LambdaFunction, "_invoke_lambda", lambda self, event: (
            *script_holder[0](self.function_name, event), ""))

        def run(script: Script, execution_input: dict, name: str = "run-1") -> Outcome:
            script_holder[:] = [script]
            arn = client.start_execution(stateMachineArn=machine, name=name, input=json.dumps(execution_input))[
                "executionArn"]
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
    script = Script(**happy(check_bid=[{"status": "PENDING", "checks": 1}, {"status": "FULFILLED", "checks": 2}],
                            poll_completion=[polled("RUNNING"), polled("SUCCEEDED")]))

    status, error, _, visited = sfn(script, SPEC)

    assert (status, error) == ("SUCCEEDED", None)
    assert visited == ["Start", "ValidateJob", "CreateBucket", "RequestSpotInstance", "LaunchResult", "WaitForBid",
                       "CheckBid", "BidResult", "WaitForBid", "CheckBid", "BidResult", "NotifyRequestSuccess",
                       "PollCompletion", "TrainingResult", "WaitForTraining", "PollCompletion", "TrainingResult",
                       "NotifyTaskCompleted", "WaitBeforeTerminate", "TerminateInstance", "JobSucceeded"]
    assert [c["event"] for c in script.calls["notify"]] == ["REQUEST_FULFILLED", "COMPLETED"]
    assert script.calls["validate_job"][0]["spec"] == SPEC
    assert script.calls["validate_job"][0]["execution"]["name"] == "run-1"
    assert script.calls["check_bid"][0]["launch"] == LAUNCHED  # each task gets the whole state


def test_given_an_interruption_then_it_relaunches_and_notifies(sfn):
    script = Script(**happy(poll_completion=[polled("INTERRUPTED", retry_allowed=True), polled("SUCCEEDED")]))

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED" and len(script.calls["request_spot_instance"]) == 2
    assert script.calls["request_spot_instance"][1]["poll"]["status"] == "INTERRUPTED"
    assert [c["event"] for c in script.calls["notify"]] == ["REQUEST_FULFILLED", "INTERRUPTED", "REQUEST_FULFILLED",
                                                            "COMPLETED"]


def test_given_a_failed_bid_then_it_launches_again_without_notifying(sfn):
    script = Script(**happy(check_bid=[{"status": "FAILED", "code": "capacity-not-available", "checks": 1},
                                       {"status": "FULFILLED", "checks": 1}]))

    status = sfn(script, SPEC).status

    assert status == "SUCCEEDED" and len(script.calls["request_spot_instance"]) == 2
    assert script.calls["request_spot_instance"][1]["bid"]["status"] == "FAILED"


@pytest.mark.parametrize("last_poll, error", [
    (polled("FAILED"), "TrainingFailed"), (polled("INTERRUPTED", retry_allowed=False), "AttemptsExhausted")])
def test_given_the_training_fails_or_runs_out_of_attempts_then_terminated_and_failed(sfn, last_poll, error):
    script = Script(**happy(poll_completion=last_poll))

    status, got_error, _, visited = sfn(script, SPEC)

    assert (status, got_error) == ("FAILED", error)
    assert visited[-4:] == ["NotifyTaskFailed", "TerminateAfterFailure", "FailureKind", error]


def test_given_every_pool_exhausted_then_no_spot_capacity_and_nothing_to_terminate(sfn):
    script = Script(**happy(request_spot_instance=LAUNCHED | {"status": "EXHAUSTED", "instance": None}))

    status, error, _, _ = sfn(script, SPEC)

    assert (status, error) == ("FAILED", "NoSpotCapacity")
    assert [c["event"] for c in script.calls["notify"]] == ["REQUEST_FAILED"]
    assert not script.calls["terminate_instance"]


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


@pytest.fixture
def start_execution_bridge(monkeypatch):
    """moto 5.2.5 hands the states:startExecution Parameters (PascalCase, as AWS requires) to botocore,
    whose Step Functions API is camelCase, and fails with KeyError 'StateMachineArn'. The emulator needs
    the same bridge; the definition stays as AWS documents it."""
    original = StateTaskServiceSfn._normalise_parameters

    def camel_case(self, parameters, boto_service_name=None, service_action_name=None):
        original(self, parameters, boto_service_name, service_action_name)
        for key in ("StateMachineArn", "Name", "Input"):
            if key in parameters:
                parameters[key[0].lower() + key[1:]] = parameters.pop(key)

    monkeypatch.setattr(StateTaskServiceSfn, "_normalise_parameters", camel_case)


def test_given_the_poll_budget_is_spent_then_a_fresh_execution_continues_the_watch(sfn, start_execution_bridge):
    script = Script(**happy(poll_completion=[polled("RUNNING", handover=True, handover_name="run-1-h1", polls=0),
                                             polled("SUCCEEDED")]))

    status, _, _, visited = sfn(script, SPEC)

    assert (status, visited[-2:]) == ("SUCCEEDED", ["HandOver", "HandedOver"])
    executions = sfn.client.list_executions(stateMachineArn=sfn.machine)["executions"]
    successor = next(e for e in executions if e["name"] == "run-1-h1")
    status, _, _, visited = finished(sfn.client, successor["executionArn"])
    assert status == "SUCCEEDED"
    assert visited[:4] == ["Start", "ResumeHandover", "WaitForTraining", "PollCompletion"]
    assert script.calls["poll_completion"][-1]["job"]["exec_name"] == "demo"  # the state came across whole
