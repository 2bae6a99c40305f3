"""await_training: the attempt's token reaches its instance (via the job bucket), and an attempt already over is answered."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.functions import await_training
from spot_fixtures import BUCKET, aws, clients, job_state, put_marker, with_launch  # noqa: F401 (fixtures)

TOKEN = "AAAA-token-of-attempt-1"


class Answers:
    """Records SendTask* calls like Step Functions, refusing them once the wait is over (TaskTimedOut)."""

    def __init__(self, over: bool = False):
        self.calls: list[tuple[str, dict]] = []
        self.over = over

    def _answer(self, name: str, **kwargs) -> dict:
        self.calls.append((name, kwargs))
        if self.over:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "Task Timed Out"}}, name)
        return {}

    def send_task_success(self, **kwargs):
        return self._answer("success", **kwargs)

    def send_task_failure(self, **kwargs):
        return self._answer("failure", **kwargs)


@pytest.fixture
def attempt(aws):
    """Attempt 2 of the job, its instance running."""
    ec2, s3 = aws
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g5.xlarge", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    return ec2, s3, with_launch(job_state(), instance_id, attempt=2)


def identity(state: dict, **overrides) -> dict:
    return {
        "attempt": state["launch"]["attempt"],
        "instance_id": state["launch"]["instance"]["instance_id"],
        "execution": state["execution"]["id"],
    } | overrides


def test_given_a_running_attempt_when_armed_then_the_token_is_written_for_that_attempt_and_not_answered(attempt):
    ec2, s3, state = attempt
    answers = Answers()

    result = await_training.arm(s3, ec2, answers, TOKEN, state)

    written = json.loads(s3.get_object(Bucket=BUCKET, Key="status/attempt-2/task-token.json")["Body"].read())
    assert written == {"token": TOKEN, **identity(state)}
    assert result["answered"] is None and answers.calls == []


@pytest.mark.parametrize("key, outcome", [(layout.COMPLETED_KEY, "completed"), (layout.INTERRUPTED_KEY, "interrupted")])
def test_given_the_agent_finished_before_the_token_existed_then_the_wait_is_answered_at_once(attempt, key, outcome):
    # Given the attempt's agent already wrote its final marker (it could not answer: no token yet)
    ec2, s3, state = attempt
    put_marker(s3, key, **identity(state), exit_code=0, final_sync_done=False)
    answers = Answers()

    # When the wait is armed
    result = await_training.arm(s3, ec2, answers, TOKEN, state)

    # Then the token is answered with success, naming the outcome; PollCompletion judges from the markers
    assert result["answered"] == outcome
    ((name, call),) = answers.calls
    assert (name, call["taskToken"]) == ("success", TOKEN)
    assert json.loads(call["output"]) == {**identity(state), "outcome": outcome}


def test_given_a_marker_of_another_attempt_then_it_does_not_answer_this_wait(attempt):
    ec2, s3, state = attempt
    put_marker(s3, layout.COMPLETED_KEY, **identity(state, attempt=1, instance_id="i-0earlier"), exit_code=0)
    answers = Answers()

    assert await_training.arm(s3, ec2, answers, TOKEN, state)["answered"] is None and answers.calls == []


def test_given_the_instance_already_ended_then_the_wait_fails_with_instance_lost(attempt):
    # Given the instance ended before the wait existed (its EC2 event found no token to answer)
    ec2, s3, state = attempt
    instance_id = state["launch"]["instance"]["instance_id"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    answers = Answers()

    result = await_training.arm(s3, ec2, answers, TOKEN, state)

    assert result["answered"] == "lost"
    ((name, call),) = answers.calls
    assert (name, call["error"]) == ("failure", "InstanceLost") and instance_id in call["cause"]


def test_given_the_wait_already_over_when_answering_then_it_is_no_error(attempt):
    ec2, s3, state = attempt
    put_marker(s3, layout.COMPLETED_KEY, **identity(state), exit_code=0)

    assert await_training.arm(s3, ec2, Answers(over=True), TOKEN, state)["answered"] == "completed"
