"""Markers: what the agent writes is what PollCompletion counts, and the token file the workflow writes is what
the agent takes, for that attempt, instance and execution only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spottrain.agent.callback import TaskCallback
from spottrain.agent.lifecycle import Agent
from spottrain.agent.options import Options
from spottrain.contract import markers
from spottrain.functions.shared.attempts import Attempt

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:SpotTrain:run-1"


class CapturingStore:
    bucket = "job-bucket"

    def __init__(self):
        self.written: dict[str, dict] = {}

    def find_json(self, key: str, retry: bool = True) -> None:
        return None  # the job bucket before the workflow armed the wait: the heartbeat goes to S3 only

    def put_json(self, key: str, document: dict) -> None:
        self.written[key] = document


@pytest.fixture
def heartbeat(tmp_path) -> dict:
    """The heartbeat the agent writes on instance i-1 during attempt 2 of EXECUTION."""
    store = CapturingStore()
    agent = Agent(
        Options(bucket="job-bucket", attempt=2, workdir=tmp_path),
        store,
        SimpleNamespace(instance_id=lambda: "i-1"),
        states=object(),
    )  # no token: never called
    agent.execution = EXECUTION
    agent._heartbeat()
    (document,) = store.written.values()
    return document


def _state(attempt: int = 2, instance_id: str = "i-1", execution: str = EXECUTION) -> dict:
    return {"launch": {"attempt": attempt, "instance": {"instance_id": instance_id}}, "execution": {"id": execution}}


def test_given_the_agents_heartbeat_then_poll_completion_counts_it_for_its_own_attempt(heartbeat):
    assert Attempt.of(_state()).wrote(heartbeat)
    assert heartbeat["phase"] in markers.PHASES


@pytest.mark.parametrize("other", [dict(attempt=3), dict(instance_id="i-2"), dict(execution=EXECUTION + "-rerun")])
def test_given_the_agents_heartbeat_then_another_attempt_instance_or_execution_ignores_it(heartbeat, other):
    assert not Attempt.of(_state(**other)).wrote(heartbeat)


def test_the_command_phases_run_in_the_order_of_all_phases():
    positions = [markers.PHASES.index(phase) for phase, _ in markers.COMMAND_PHASES]
    assert positions == sorted(positions) and markers.COMMAND_PHASES[-1][0] == markers.EXEC


def _callback(record: dict) -> TaskCallback:
    """The agent's side of attempt 2's wait on instance i-1, reading `record` as its token file."""
    callback = TaskCallback(object(), lambda: record, attempt=2, instance_id="i-1")
    callback.execution = EXECUTION
    return callback


def test_given_the_token_file_the_workflow_writes_then_the_agent_of_that_attempt_takes_its_token():
    # await_training writes markers.token_record(...) for the attempt's instance
    callback = _callback(markers.token_record("token-2", 2, "i-1", EXECUTION))

    assert callback.discover() and callback.token == "token-2"


@pytest.mark.parametrize("other", [dict(attempt=3), dict(instance_id="i-2"), dict(execution=EXECUTION + "-rerun")])
def test_given_another_attempts_token_file_then_the_agent_ignores_it(other):
    whose = {"attempt": 2, "instance_id": "i-1", "execution": EXECUTION, **other}
    callback = _callback(markers.token_record("token-x", **whose))

    assert not callback.discover() and callback.token is None
