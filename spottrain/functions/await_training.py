"""AwaitTraining: arm the attempt's callback wait by handing its task token to the attempt's instance.

Invoked by WaitForTraining (`lambda:invoke.waitForTaskToken`). The token goes to
`status/attempt-<n>/task-token.json` in the job bucket, where the attempt's agent reads it (heartbeats,
success, failure) and the EC2 state-change handler finds it (InstanceLost). What happened before the
token existed would otherwise go unanswered until the heartbeat timeout, so once the token is written
this answers it itself when the agent already finished (a completed or interrupted marker of this
attempt) or the instance is already gone.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from spottrain.contract import layout, markers
from spottrain.contract.instances import LIVE_INSTANCE_STATES
from spottrain.contract.status import CallbackError
from spottrain.functions.shared import callbacks, runtime
from spottrain.functions.shared.attempts import Attempt, describe_instance, instance_state, marker
from spottrain.functions.shared.awserrors import transient_errors

logger = Logger(service="spottrain-await-training")

FINISHED_MARKERS = {layout.COMPLETED_KEY: "completed", layout.INTERRUPTED_KEY: "interrupted"}


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    state = event["state"]
    logger.append_keys(job=state["job"]["exec_name"], execution=state["execution"]["name"])
    with transient_errors():
        return arm(runtime.client("s3"), runtime.client("ec2"), runtime.client("stepfunctions"), event["token"], state)


def arm(s3: Any, ec2: Any, sfn: Any, token: str, state: dict) -> dict:
    """Write the token for the attempt's instance; answer it at once if the attempt is already over."""
    attempt = Attempt.of(state)
    bucket = state["storage"]["bucket"]
    callbacks.write_token(
        s3, bucket, markers.token_record(token, attempt.number, attempt.instance_id, attempt.execution_id)
    )
    # Read after the write: an agent or EC2 event arriving from now on finds the token itself.
    answered = _answer_if_over(s3, ec2, sfn, token, bucket, attempt)
    logger.info(
        "wait armed", extra={"attempt": attempt.number, "instance_id": attempt.instance_id, "answered": answered}
    )
    return {"attempt": attempt.number, "instance_id": attempt.instance_id, "answered": answered}


def _answer_if_over(s3: Any, ec2: Any, sfn: Any, token: str, bucket: str, attempt: Attempt) -> str | None:
    for key, outcome in FINISHED_MARKERS.items():
        if marker(s3, bucket, key, attempt):
            identity = markers.identity(attempt.number, attempt.instance_id, attempt.execution_id)
            callbacks.succeed(sfn, token, {**identity, "outcome": outcome})
            return outcome
    current = instance_state(describe_instance(ec2, attempt.instance_id))
    if current not in LIVE_INSTANCE_STATES:
        callbacks.fail(sfn, token, CallbackError.INSTANCE_LOST.value, f"instance {attempt.instance_id} {current}")
        return "lost"
    return None
