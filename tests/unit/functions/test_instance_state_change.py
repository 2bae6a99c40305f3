"""instance_state_change: an instance of this stack that stops or ends fails its attempt's wait, and nothing else."""

from __future__ import annotations

import json

import pytest

from spottrain.contract import layout
from spottrain.contract.markers import token_record
from spottrain.functions import instance_state_change
from spot_fixtures import BUCKET, EXEC_NAME, aws, clients, make_settings  # noqa: F401 (fixtures)
from test_await_training import Answers

TOKEN = "AAAA-token"


def launch(ec2, attempt: str | None = "1", stack: str = "SpotTrainTest") -> str:
    tags = [
        {"Key": layout.TAG_STACK, "Value": stack},
        {"Key": layout.TAG_JOB, "Value": EXEC_NAME},
        {"Key": layout.TAG_EXECUTION, "Value": "run-1"},
    ]
    if attempt is not None:
        tags.append({"Key": layout.TAG_ATTEMPT, "Value": attempt})
    return ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="g5.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]


def arm(s3, instance_id: str, attempt: int = 1) -> None:
    s3.put_object(
        Bucket=BUCKET,
        Key=layout.task_token_key(attempt),
        Body=json.dumps(token_record(TOKEN, attempt, instance_id, "arn:...:execution:sm:run-1")).encode(),
    )


def report(ec2, s3, answers, instance_id: str, state: str = "shutting-down") -> dict:
    return instance_state_change.report_loss(ec2, s3, answers, make_settings(), instance_id, state)


def test_given_an_armed_wait_when_its_instance_shuts_down_then_the_wait_fails_with_instance_lost(aws):
    ec2, s3 = aws
    instance_id = launch(ec2)
    arm(s3, instance_id)
    answers = Answers()

    result = report(ec2, s3, answers, instance_id)

    assert result["reported"] is True
    ((name, call),) = answers.calls
    assert (name, call["taskToken"], call["error"]) == ("failure", TOKEN, "InstanceLost")
    assert call["cause"] == f"instance {instance_id} shutting-down"


def test_given_the_attempts_token_is_for_another_instance_then_nothing_is_answered(aws):
    # Given attempt 1 relaunched after a failed bid: the token names the new instance, the old one ends now
    ec2, s3 = aws
    old, new = launch(ec2), launch(ec2)
    arm(s3, new)
    answers = Answers()

    assert report(ec2, s3, answers, old, "terminated")["reported"] is False and answers.calls == []


@pytest.mark.parametrize("stack, attempt", [("SomeoneElsesStack", "1"), ("SpotTrainTest", None)])
def test_given_an_instance_that_is_not_a_tagged_attempt_of_this_stack_then_it_is_ignored(aws, stack, attempt):
    ec2, s3 = aws
    instance_id = launch(ec2, attempt=attempt, stack=stack)
    arm(s3, instance_id)
    answers = Answers()

    assert report(ec2, s3, answers, instance_id)["reported"] is False and answers.calls == []


def test_given_no_wait_armed_yet_then_nothing_to_answer(aws):
    ec2, s3 = aws
    answers = Answers()

    assert report(ec2, s3, answers, launch(ec2))["why"] == "no wait armed for this instance"


def test_given_the_wait_already_over_then_the_late_event_is_harmless(aws):
    # Given the agent answered success and shut the instance down itself
    ec2, s3 = aws
    instance_id = launch(ec2)
    arm(s3, instance_id)

    result = report(ec2, s3, Answers(over=True), instance_id, "terminated")

    assert (result["reported"], result["why"]) == (False, "its wait is already over")


def test_given_the_eventbridge_event_then_the_handler_reads_instance_and_state_from_its_detail(aws, monkeypatch):
    ec2, s3 = aws
    instance_id = launch(ec2)
    answers = Answers()
    monkeypatch.setattr(
        instance_state_change.runtime, "client", {"ec2": ec2, "s3": s3, "stepfunctions": answers}.__getitem__
    )
    monkeypatch.setattr(instance_state_change.runtime, "settings", make_settings)
    arm(s3, instance_id)
    event = {
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "detail": {"instance-id": instance_id, "state": "stopping"},
    }

    from spot_fixtures import LAMBDA_CONTEXT

    assert instance_state_change.handler(event, LAMBDA_CONTEXT)["reported"] is True
    assert answers.calls[0][1]["cause"] == f"instance {instance_id} stopping"
