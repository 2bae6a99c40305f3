"""Fault specs as a user types them on the command line, and the verdict on each after a run."""

from __future__ import annotations

import pytest

from spottrain.local.faults import FORMS, FaultError, Faults, Interruption, lambda_tasks

ALLOWED = ("g5.xlarge", "g6.xlarge", "g4dn.xlarge")
POLL_COMPLETION = "SpotTrainLocal-TasksPollCompletion5F1952DB-OMUABWSNQFMC"


def test_given_every_kind_of_fault_when_parsed_then_each_is_set_and_described_back():
    faults = Faults.parse(["no-capacity=g5.xlarge,g6.xlarge", "interrupt-after=8:2", "lambda-error=PollCompletion:2"])

    assert faults.no_capacity == {"g5.xlarge", "g6.xlarge"}
    assert (faults.interruption, faults.interrupt_count) == (Interruption(seconds=8), 2)
    assert faults.lambda_errors == {"PollCompletion": 2}
    assert Faults.parse(faults.describe().split()).describe() == faults.describe()


@pytest.mark.parametrize("spec, checkpoint", [("interrupt-at=checkpoint", 1), ("interrupt-at=checkpoint:3", 3)])
def test_given_interrupt_at_checkpoint_then_one_instance_is_interrupted_at_that_checkpoint(spec, checkpoint):
    faults = Faults.parse([spec])

    assert faults.take_interrupt("i-1") == Interruption(checkpoint=checkpoint)
    assert faults.take_interrupt("i-2") is None
    assert faults.describe() == ""  # nothing left to inject once the instance is armed
    assert str(Interruption(checkpoint=checkpoint)) == spec


def test_given_interrupt_after_with_a_count_then_only_that_many_instances_are_reclaimed():
    faults = Faults.parse(["interrupt-after=5:2"])

    assert [faults.take_interrupt(f"i-{n}") for n in range(3)] == [Interruption(seconds=5)] * 2 + [None]


def test_given_no_faults_then_nothing_is_injected_and_nothing_is_missed():
    faults = Faults.parse([])

    assert faults.describe() == ""
    assert not faults.take_lambda_error(POLL_COMPLETION)
    assert faults.take_interrupt("i-1") is None
    assert not faults.refuse_capacity("g5.xlarge")
    assert faults.never_fired() == []


def test_given_lambda_error_count_when_the_function_runs_then_only_that_many_invocations_fail():
    faults = Faults.parse(["lambda-error=PollCompletion:2"])

    outcomes = [faults.take_lambda_error(POLL_COMPLETION) for _ in range(3)]

    assert outcomes == [True, True, False]
    assert not faults.take_lambda_error("SpotTrainLocal-TasksCheckBidE167C3BE-QIN4XAN4LUZD")
    assert faults.never_fired() == []


@pytest.mark.parametrize("task", lambda_tasks())
def test_given_any_task_by_its_module_or_state_name_then_it_is_accepted_and_matches_its_function(task):
    # users know a task as poll_completion (the module) or PollCompletion (the state and construct)
    state = "".join(part.capitalize() for part in task.split("_"))
    for name in (task, state):
        assert Faults.parse([f"lambda-error={name}:1"]).take_lambda_error(f"SpotTrain-Tasks{state}AB12-XYZ")


def test_the_seven_workflow_tasks_are_the_known_functions():
    assert set(lambda_tasks()) >= {
        "validate_job",
        "create_bucket",
        "request_spot_instance",
        "check_bid",
        "poll_completion",
        "notify",
        "terminate_instance",
    }


@pytest.mark.parametrize(
    "spec, mentions",
    [
        ("interrupt-after", "NAME=VALUE"),
        ("bogus", "NAME=VALUE"),
        ("explode=1", "unknown fault name 'explode'"),
        ("interrupt-after=soon", "interrupt-after=8"),
        ("interrupt-after=nan", "finite"),
        ("interrupt-after=inf", "finite"),
        ("interrupt-after=-1", ">= 0"),
        ("interrupt-after=5:0", "count >= 1"),
        ("interrupt-at=epoch", "checkpoint[:<n>]"),
        ("interrupt-at=checkpoint:0", "n >= 1"),
        ("interrupt-at=checkpoint:x", "n >= 1"),
        ("lambda-error=PollCompletion", "<function>:<count>"),
        ("lambda-error=PollCompletion:0", "count >= 1"),
        ("lambda-error=NoSuchFunction:1", "no task function 'NoSuchFunction'"),
        ("no-capacity=,", "no-capacity=g5.xlarge"),
    ],
)
def test_given_a_malformed_or_unknown_fault_then_one_line_names_it_and_the_accepted_forms(spec, mentions):
    with pytest.raises(FaultError) as error:
        Faults.parse([spec], ALLOWED)

    message = str(error.value)
    assert spec in message and mentions in message
    assert all(form in message for form in FORMS)
    assert "\n" not in message


def test_given_an_instance_type_outside_the_allow_list_then_refused_naming_the_allowed_ones():
    with pytest.raises(FaultError) as error:
        Faults.parse(["no-capacity=g5.xlarge,g9.huge"], ALLOWED)

    assert "no-capacity=g9.huge" in str(error.value)
    assert all(allowed in str(error.value) for allowed in ALLOWED)


def test_given_two_interruptions_then_refused():
    with pytest.raises(FaultError, match="only one interrupt-at or interrupt-after"):
        Faults.parse(["interrupt-at=checkpoint", "interrupt-after=4"])


# --- the verdict -------------------------------------------------------------------------------


def test_given_faults_that_took_effect_then_none_is_reported_missing():
    faults = Faults.parse(["no-capacity=g5.xlarge", "interrupt-at=checkpoint", "lambda-error=CheckBid:1"])

    assert faults.refuse_capacity("g5.xlarge") and not faults.refuse_capacity("g6.xlarge")
    faults.take_interrupt("i-1")
    faults.interrupt_fired("i-1")
    assert faults.take_lambda_error("SpotTrain-TasksCheckBidE167-X")

    assert faults.never_fired() == []
    assert faults.pending() == []


def test_given_faults_that_never_took_effect_then_each_is_reported_with_why():
    # Given a run that launched g6 only, whose training ended before its notice was due, and
    # whose PollCompletion ran once where two failures were asked for
    faults = Faults.parse(["no-capacity=g4dn.xlarge", "interrupt-after=600", "lambda-error=PollCompletion:2"])
    faults.take_interrupt("i-1")
    faults.interrupt_missed("i-1", "i-1 ended 3.1s into its training, before the notice was due at 600s")
    faults.take_lambda_error(POLL_COMPLETION)

    # Then the verdict names each fault as typed, and why it never fired
    assert faults.never_fired() == [
        "injected fault no-capacity=g4dn.xlarge never fired: no launch asked for g4dn.xlarge",
        "injected fault interrupt-after=600 never fired: i-1 ended 3.1s into its training, before the notice was due at 600s",
        "injected fault lambda-error=PollCompletion:2 never fired: PollCompletion was invoked only 1 time(s), "
        "2 failure(s) were asked for",
    ]


def test_given_an_interruption_no_instance_reached_then_it_is_reported():
    assert Faults.parse(["interrupt-at=checkpoint"]).never_fired() == [
        "injected fault interrupt-at=checkpoint never fired: no instance was launched"
    ]
    faults = Faults.parse(["interrupt-after=4:2"])
    faults.take_interrupt("i-1")
    faults.interrupt_fired("i-1")
    assert faults.never_fired() == [
        "injected fault interrupt-after=4:2 never fired: only 1 of the 2 instances to interrupt were launched"
    ]


def test_given_an_armed_interruption_still_waiting_then_it_is_pending_and_counts_as_missed():
    faults = Faults.parse(["interrupt-at=checkpoint"])
    faults.take_interrupt("i-1")

    assert faults.pending() == ["i-1"]
    assert faults.never_fired() == [
        "injected fault interrupt-at=checkpoint never fired: i-1 was still waiting for it when the run ended"
    ]


def test_given_new_faults_loaded_then_the_old_ones_and_their_verdicts_are_forgotten():
    faults = Faults.parse(["no-capacity=g5.xlarge"])

    faults.load(Faults.parse(["lambda-error=Notify:1"]))

    assert faults.describe() == "lambda-error=Notify:1"
    assert faults.never_fired() == [
        "injected fault lambda-error=Notify:1 never fired: Notify was never invoked, 1 failure(s) were asked for"
    ]


class FakeClock:
    """time.monotonic for the faults module: the test moves time, so no result depends on machine speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_given_a_capacity_outage_then_every_pool_refuses_for_that_long_from_the_first_launch_then_has_room(monkeypatch):
    # Given capacity-outage=20, and the first launch request 5 s after the fault was set
    clock = FakeClock()
    monkeypatch.setattr("spottrain.local.faults.time.monotonic", clock)
    faults = Faults.parse(["capacity-outage=20"])
    clock.now += 5

    # When launches are requested over the next 25 s
    refused = []
    for step, instance_type in enumerate(["g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.xlarge"]):
        refused.append(faults.refuse_capacity(instance_type))
        clock.now += 19.9 if step == 0 else 0.2

    # Then every type is refused until 20 s after the first request, and has room after it
    assert refused == [True, True, False, False]
    assert faults.never_fired() == []
    assert faults.describe() == "capacity-outage=20"


def test_given_a_capacity_outage_and_no_launch_then_it_never_fired_and_says_why():
    faults = Faults.parse(["capacity-outage=20"])

    assert faults.never_fired() == ["injected fault capacity-outage=20 never fired: no launch was requested during it"]


@pytest.mark.parametrize(
    "spec", ["capacity-outage=0", "capacity-outage=-3", "capacity-outage=soon", "capacity-outage=inf"]
)
def test_given_a_capacity_outage_without_a_positive_duration_then_the_error_shows_an_example(spec):
    with pytest.raises(FaultError, match="capacity-outage=20"):
        Faults.parse([spec])
