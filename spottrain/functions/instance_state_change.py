"""InstanceStateChange: fail the waiting task of an instance that stops or ends without its agent reporting.

Target of the EventBridge rule on "EC2 Instance State-change Notification" (stopping, stopped,
shutting-down, terminated). The event names only the instance; its tags name the stack, the job and the
attempt, whose token record (status/attempt-<n>/task-token.json) says which instance the wait is for.
The instance's own end after a normal finish, a workflow termination or a replaced attempt reaches a
wait that is already over, or a token of another instance: nothing to do.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from spottrain.contract import layout, markers
from spottrain.contract.names import bucket_name
from spottrain.contract.settings import Settings
from spottrain.contract.status import CallbackError
from spottrain.functions.shared import callbacks, runtime
from spottrain.functions.shared.attempts import describe_instance
from spottrain.functions.shared.awserrors import transient_errors

logger = Logger(service="spottrain-instance-state-change")


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    detail = event.get("detail") or {}
    with transient_errors():
        return report_loss(
            runtime.client("ec2"),
            runtime.client("s3"),
            runtime.client("stepfunctions"),
            runtime.settings(),
            detail["instance-id"],
            detail["state"],
        )


def report_loss(ec2: Any, s3: Any, sfn: Any, settings: Settings, instance_id: str, new_state: str) -> dict:
    """SendTaskFailure(InstanceLost) to the wait of the attempt this instance runs, if it still waits."""
    tags = _tags(describe_instance(ec2, instance_id))
    if tags.get(layout.TAG_STACK) != settings.stack_name or not tags.get(layout.TAG_JOB):
        return _ignored(instance_id, "not an instance of this stack's jobs")
    try:
        attempt = int(tags.get(layout.TAG_ATTEMPT, ""))
    except ValueError:
        return _ignored(instance_id, "no attempt tag")
    record = callbacks.read_token(s3, bucket_name(settings.bucket_prefix, tags[layout.TAG_JOB]), attempt)
    if record is None or record.get("instance_id") != instance_id:
        return _ignored(instance_id, "no wait armed for this instance")
    cause = f"instance {instance_id} {new_state}"
    if not callbacks.fail(sfn, record[markers.TOKEN], CallbackError.INSTANCE_LOST.value, cause):
        return _ignored(instance_id, "its wait is already over")
    logger.warning(
        "instance lost: its wait failed",
        extra={"instance_id": instance_id, "state": new_state, "job": tags[layout.TAG_JOB], "attempt": attempt},
    )
    return {"instance_id": instance_id, "reported": True}


def _tags(described: dict | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in (described or {}).get("Tags", [])}


def _ignored(instance_id: str, why: str) -> dict:
    logger.info("state change needs no answer", extra={"instance_id": instance_id, "why": why})
    return {"instance_id": instance_id, "reported": False, "why": why}
