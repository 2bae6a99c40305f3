"""ValidateJob handler: builds the initial state from the raw execution input, or fails the execution."""
from __future__ import annotations

import copy

import pytest

from jobstate_support import ORIGINAL_2017_SPEC, FakeLambdaContext, aws, lambda_env  # noqa: F401
from lambdas import validate_job
from lambdas.shared.config import ConfigError
from lambdas.shared.status import ErrorName

EXECUTION = {"id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-7", "name": "run-7",
             "started_at": "2026-01-01T00:00:00Z"}


def test_given_2017_spec_when_handler_runs_then_returns_whole_initial_state(lambda_env):
    state = validate_job.handler({"spec": copy.deepcopy(ORIGINAL_2017_SPEC), "execution": EXECUTION}, FakeLambdaContext())

    assert set(state) == {"job", "execution"}
    assert state["execution"] == {**EXECUTION, "first_id": EXECUTION["id"], "handovers": 0}
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
    with pytest.raises(ConfigError) as caught:
        validate_job.handler({"spec": ORIGINAL_2017_SPEC, "execution": EXECUTION}, FakeLambdaContext())
    assert "STACK_NAME is not set" in str(caught.value) and "MAX_ATTEMPTS='three'" in str(caught.value)
