"""ValidateJob handler: builds the initial state from the raw execution input, or fails the execution."""

from __future__ import annotations

import copy
import json

import boto3
import pytest

from jobstate_support import ORIGINAL_2017_SPEC, FakeLambdaContext, aws, lambda_env  # noqa: F401
from spottrain.functions import validate_job
from spottrain.functions.shared import report
from spottrain.contract.settings import EnvironmentConfigError
from spottrain.contract.status import ErrorName

EXECUTION = {
    "id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-7",
    "name": "run-7",
    "started_at": "2026-01-01T00:00:00Z",
}
PASS = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


@pytest.fixture
def machine(lambda_env):
    """A state machine whose executions stay RUNNING (moto's non-executing backend), and a way to start them."""
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="sm", definition=PASS, roleArn="arn:aws:iam::123456789012:role/sm")[
        "stateMachineArn"
    ]

    def start(name: str, execution_input: dict) -> dict:
        """The ValidateJob event of a started execution, as the ASL builds it."""
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(execution_input))
        return {
            "spec": execution_input,
            "state_machine": arn,
            "execution": {
                "id": started["executionArn"],
                "name": name,
                "started_at": report.isoformat(started["startDate"]).replace("+00:00", "Z"),
            },
        }

    return start


def test_given_2017_spec_when_handler_runs_then_returns_whole_initial_state(lambda_env):
    event = {
        "spec": copy.deepcopy(ORIGINAL_2017_SPEC),
        "execution": EXECUTION,
        "state_machine": "arn:aws:states:us-east-1:123456789012:stateMachine:sm",
    }
    boto3.client("stepfunctions").create_state_machine(
        name="sm", definition=PASS, roleArn="arn:aws:iam::123456789012:role/sm"
    )

    state = validate_job.handler(event, FakeLambdaContext())

    assert set(state) == {"job", "execution"}
    assert state["execution"] == EXECUTION
    assert state["job"]["bucket"] == "spottrain-123456789012-pix2pix-facade"
    assert state["job"]["repository_name"] == "chainer-pix2pix"
    # Stack caps from the environment are the job's defaults.
    assert state["job"]["limits"] == {"max_runtime_minutes": 600, "max_attempts": 3}
    assert state["job"]["instance"]["types"] == ["g5.xlarge", "g4dn.xlarge"]


def test_given_bad_spec_when_handler_runs_then_error_type_is_the_workflow_error_name(lambda_env):
    spec = dict(ORIGINAL_2017_SPEC, exec_name="Bad Name")
    with pytest.raises(validate_job.InvalidJobSpec) as caught:
        validate_job.handler({"spec": spec, "execution": EXECUTION}, FakeLambdaContext())
    # Lambda reports the class name as errorType; the ASL and the CLI match on it.
    assert type(caught.value).__name__ == ErrorName.INVALID_JOB_SPEC.value
    assert str(caught.value).startswith("job spec has 1 problem:\n- exec_name:")


def test_given_no_spec_in_event_when_handler_runs_then_invalid_job_spec(lambda_env):
    with pytest.raises(validate_job.InvalidJobSpec, match="spec: must be an object"):
        validate_job.handler({"execution": EXECUTION}, FakeLambdaContext())


def test_given_stack_disallows_on_demand_when_job_asks_then_rejected_by_environment(lambda_env, monkeypatch):
    monkeypatch.setenv("ON_DEMAND_FALLBACK", "false")
    spec = dict(ORIGINAL_2017_SPEC, instance={"on_demand_fallback": True})
    with pytest.raises(validate_job.InvalidJobSpec, match="instance.on_demand_fallback"):
        validate_job.handler({"spec": spec, "execution": EXECUTION}, FakeLambdaContext())


def test_given_misconfigured_function_when_cold_start_then_config_error_names_every_variable(lambda_env, monkeypatch):
    monkeypatch.delenv("STACK_NAME")
    monkeypatch.setenv("MAX_ATTEMPTS", "three")
    with pytest.raises(EnvironmentConfigError) as caught:
        validate_job.handler({"spec": ORIGINAL_2017_SPEC, "execution": EXECUTION}, FakeLambdaContext())
    assert "STACK_NAME is not set" in str(caught.value) and "MAX_ATTEMPTS='three'" in str(caught.value)


def test_given_the_job_already_running_when_a_second_run_starts_then_job_already_running_and_nothing_created(machine):
    # Given a run of pix2pix-facade in progress (a job of another name runs beside it)
    machine("first", ORIGINAL_2017_SPEC)
    machine("neighbour", dict(ORIGINAL_2017_SPEC, exec_name="other-job"))
    second = machine("second", copy.deepcopy(ORIGINAL_2017_SPEC))

    # When a second execution of the same exec_name validates
    with pytest.raises(validate_job.JobAlreadyRunning) as caught:
        validate_job.handler(second, FakeLambdaContext())

    # Then it fails with the shared error name, naming the running execution and the way out; no bucket exists
    assert type(caught.value).__name__ == ErrorName.JOB_ALREADY_RUNNING.value
    message = str(caught.value)
    assert message.startswith('exec_name: job "pix2pix-facade" is already running as execution first (started ')
    assert "spottrain cancel pix2pix-facade" in message
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_given_a_running_job_of_another_name_when_validating_then_accepted(machine):
    machine("neighbour", dict(ORIGINAL_2017_SPEC, exec_name="other-job"))

    state = validate_job.handler(machine("mine", copy.deepcopy(ORIGINAL_2017_SPEC)), FakeLambdaContext())

    assert state["job"]["exec_name"] == "pix2pix-facade"


def test_given_two_starts_racing_when_both_validate_then_only_the_earlier_proceeds(machine):
    # Given two executions of one job, both running when each validates
    earlier = machine("earlier", copy.deepcopy(ORIGINAL_2017_SPEC))
    later = machine("later", copy.deepcopy(ORIGINAL_2017_SPEC))

    # When both validate, Then the one that started first holds the job and the other is refused
    assert validate_job.handler(earlier, FakeLambdaContext())["execution"]["name"] == "earlier"
    with pytest.raises(validate_job.JobAlreadyRunning, match="as execution earlier"):
        validate_job.handler(later, FakeLambdaContext())


def test_given_a_sweep_spec_started_on_the_job_machine_when_validated_then_refused_naming_the_sweep_path(lambda_env):
    # Given a spec with a sweep block started directly on the job state machine (not through `spottrain submit`)
    spec = dict(ORIGINAL_2017_SPEC, sweep={"grid": {"LR": ["0.1", "0.01"]}})
    # Then nothing is created: it would otherwise train the base spec once and ignore every variant
    with pytest.raises(validate_job.InvalidJobSpec, match="sweep: the job state machine runs one job"):
        validate_job.handler({"spec": spec, "execution": EXECUTION}, FakeLambdaContext())
