"""Fault specs as a user types them on the command line."""
from __future__ import annotations

import pytest

from spottrain.local.faults import FaultError, Faults


def test_given_all_three_faults_when_parsed_then_each_is_set_and_described_back():
    faults = Faults.parse(["no-capacity=g5.xlarge,g6.xlarge", "interrupt-after=8", "lambda-error=PollCompletion:2"])

    assert faults.no_capacity == {"g5.xlarge", "g6.xlarge"}
    assert faults.interrupt_after == 8
    assert faults.interrupt_count == 1
    assert faults.lambda_errors == {"PollCompletion": 2}
    assert Faults.parse(faults.describe().split()).describe() == faults.describe()


def test_given_interrupt_after_with_a_count_then_only_that_many_instances_are_reclaimed():
    faults = Faults.parse(["interrupt-after=5:2"])

    assert [faults.take_interrupt() for _ in range(3)] == [True, True, False]


def test_given_no_faults_then_nothing_is_injected():
    faults = Faults.parse([])

    assert faults.describe() == ""
    assert not faults.take_lambda_error("SpotTrain-TasksPollCompletion5F1952DB-X")
    assert not faults.take_interrupt()


def test_given_lambda_error_count_when_the_function_runs_then_only_that_many_invocations_fail():
    faults = Faults.parse(["lambda-error=PollCompletion:2"])
    cdk_name = "SpotTrainLocal-TasksPollCompletion5F1952DB-OMUABWSNQFMC"

    outcomes = [faults.take_lambda_error(cdk_name) for _ in range(3)]

    assert outcomes == [True, True, False]
    assert not faults.take_lambda_error("SpotTrainLocal-TasksCheckBidE167C3BE-QIN4XAN4LUZD")


def test_given_a_task_module_name_then_it_matches_the_cdk_function_name():
    # users know the task as poll_completion (the module) or PollCompletion (the state)
    assert Faults.parse(["lambda-error=poll_completion:1"]).take_lambda_error("Stack-TasksPollCompletionAB-1")


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ("interrupt-after", "NAME=VALUE"),
        ("explode=1", "unknown name 'explode'"),
        ("interrupt-after=soon", "interrupt-after=8"),
        ("interrupt-after=5:0", "count >= 1"),
        ("lambda-error=PollCompletion", "<function>:<count>"),
        ("lambda-error=PollCompletion:0", "count >= 1"),
        ("no-capacity=,", "no-capacity=g5.xlarge"),
    ],
)
def test_given_a_malformed_fault_then_the_error_names_it_and_shows_the_right_form(spec, mentions):
    with pytest.raises(FaultError) as error:
        Faults.parse([spec])

    assert spec in str(error.value)
    assert mentions in str(error.value)
