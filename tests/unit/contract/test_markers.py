"""Markers: what the agent writes is what PollCompletion counts, for that attempt, instance and execution only."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from spottrain.agent.lifecycle import Agent
from spottrain.agent.options import Options
from spottrain.contract import markers
from spottrain.functions.poll_completion import Attempt

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:SpotTrain:run-1"


class CapturingStore:
    def __init__(self):
        self.written: dict[str, dict] = {}

    def put_json(self, key: str, document: dict) -> None:
        self.written[key] = document


@pytest.fixture
def heartbeat(tmp_path) -> dict:
    """The heartbeat the agent writes on instance i-1 during attempt 2 of EXECUTION."""
    store = CapturingStore()
    agent = Agent(Options(bucket="job-bucket", attempt=2, workdir=tmp_path), store,
                  SimpleNamespace(instance_id=lambda: "i-1"))
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
