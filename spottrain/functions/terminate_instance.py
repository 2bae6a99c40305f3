"""TerminateInstance: no instance or open spot request of a job outlives its workflow.

Finds what to stop by tag (this stack's name, the same tag the IAM condition requires, the job's name,
and the execution that launched it), so it works from any of its three callers: the workflow (whole
state) and the EventBridge rule for aborted/timed-out executions stop only what their execution
launched, never another run's instance; `spottrain cancel` stops the whole job. Each caller also deletes the run's secrets role
(shared/secrets_role.py). Running it twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.functions import notify
from spottrain.contract import layout, markers, names
from spottrain.contract.instances import UNTERMINATED_INSTANCE_STATES
from spottrain.functions.shared import report, secrets_role
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared import runtime
from spottrain.contract.settings import Settings
from spottrain.contract.status import JobStatus, NotifyEvent

logger = Logger(service="spottrain")

OPEN_REQUEST_STATES = ["open", "active"]
EXECUTION_STATUS_CHANGE = "Step Functions Execution Status Change"
# Execution status (EventBridge) → how the job ended, for report.json and the email.
ENDED_BY_EXECUTION_STATUS = {"ABORTED": "CANCELLED", "TIMED_OUT": "TIMED_OUT"}


@dataclasses.dataclass(frozen=True)
class StopOrder:
    """What to stop and how to record it, whichever caller asked."""

    exec_name: str
    execution: str | None  # the execution whose launches to stop (its spottrain:execution tag); None: all the job's
    state: dict
    status: str  # report.json's final status
    announce: bool  # the workflow sends its own emails; the other callers need the CANCELLED one
    reason: str = ""
    spare: str | None = None  # an interrupted instance still in its final sync: it shuts itself down


# ----- understanding the caller ----------------------------------------------------------------


def _status_from_state(state: dict) -> str:
    if state.get("error"):
        return "ERROR"
    if (state.get("poll") or {}).get("status") == JobStatus.SUCCEEDED.value:
        return JobStatus.SUCCEEDED.value
    return JobStatus.FAILED.value


def _syncing_instance(state: dict) -> str | None:
    """The interrupted attempt's instance while its final sync runs: terminating it would lose checkpoints.

    None once PollCompletion had the workflow wait out the spot notice's window (`final_sync_waited`): EC2 has
    reclaimed a really interrupted instance by then, and one still running wrote a false marker. None on the
    error path too (TerminateOnError): nothing would terminate the instance later, and its marker may be false.
    """
    if state.get("error"):
        return None
    poll = state.get("poll") or {}
    syncing = (
        poll.get("status") == JobStatus.INTERRUPTED.value
        and (poll.get("detail") or {}).get(markers.FINAL_SYNC_DONE) is False
        and not poll.get("final_sync_waited")
    )
    return ((state.get("launch") or {}).get("instance") or {}).get("instance_id") if syncing else None


def _from_execution_event(event: dict, settings: Settings) -> StopOrder | None:
    detail = event.get("detail") or {}
    ended = ENDED_BY_EXECUTION_STATUS.get(str(detail.get("status")))
    if ended is None:
        return None
    try:
        execution_input = json.loads(detail.get("input") or "{}")
    except ValueError:
        execution_input = None
    if not isinstance(execution_input, dict):
        return None
    exec_name = execution_input.get("exec_name")
    if not isinstance(exec_name, str) or not exec_name:
        return None
    state = _minimal_state(exec_name, settings, detail.get("name"), emails=execution_input.get("emails"))
    reason = "execution timed out" if ended == "TIMED_OUT" else "execution aborted"
    return StopOrder(exec_name, state["execution"].get("name"), state, ended, announce=True, reason=reason)


def _minimal_state(exec_name: str, settings: Settings, execution_name: str | None = None, emails: Any = None) -> dict:
    """Enough state for the CANCELLED email: the job's own `emails: false` (a summary-only sweep's
    variant) carries over, so the email is skipped on this path as on the workflow's."""
    bucket = names.bucket_name(settings.bucket_prefix, exec_name)
    job = {"exec_name": exec_name, "bucket": bucket, **({"emails": False} if emails is False else {})}
    return {"job": job, "storage": {"bucket": bucket}, "execution": {"name": execution_name}}


def parse_event(event: dict, settings: Settings) -> StopOrder | None:
    """None when the event names no job (e.g. an execution aborted before its spec was valid JSON)."""
    if event.get("detail-type") == EXECUTION_STATUS_CHANGE:
        return _from_execution_event(event, settings)
    if isinstance(event.get("job"), dict):
        execution = (event.get("execution") or {}).get("name")
        return StopOrder(
            event["job"]["exec_name"],
            execution,
            event,
            _status_from_state(event),
            announce=False,
            spare=_syncing_instance(event),
        )
    if event.get("exec_name"):
        reason = event.get("reason") or "cancelled"
        state = _minimal_state(event["exec_name"], settings, event.get("execution"), emails=event.get("emails"))
        return StopOrder(event["exec_name"], None, state, "CANCELLED", announce=True, reason=reason)
    raise ValueError(
        "event: expected the workflow state, an EventBridge execution status change, "
        'or {"exec_name": ..., "reason": "cancelled"} (optionally "execution": its run\'s name, '
        '"emails": false).'
    )


# ----- stopping things -------------------------------------------------------------------------


def _job_filters(settings: Settings, exec_name: str, execution: str | None) -> list[dict]:
    filters = [
        {"Name": f"tag:{layout.TAG_JOB}", "Values": [exec_name]},
        {"Name": f"tag:{layout.TAG_STACK}", "Values": [settings.stack_name]},
    ]
    if execution:
        filters.append({"Name": f"tag:{layout.TAG_EXECUTION}", "Values": [execution]})
    return filters


def terminate_job_instances(
    ec2: Any, settings: Settings, exec_name: str, execution: str | None, spare: str | None = None
) -> list[str]:
    filters = _job_filters(settings, exec_name, execution) + [
        {"Name": "instance-state-name", "Values": sorted(UNTERMINATED_INSTANCE_STATES)}
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    ids = sorted(
        i["InstanceId"]
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
        if i["InstanceId"] != spare
    )
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return ids


def _open_request_ids(ec2: Any, filters: list[dict], request_ids: list[str] | None = None) -> list[str]:
    options = {"SpotInstanceRequestIds": request_ids} if request_ids else {}
    try:
        answer = ec2.describe_spot_instance_requests(
            Filters=filters + [{"Name": "state", "Values": OPEN_REQUEST_STATES}], **options
        )
    except ClientError as exc:
        if error_code(exc) == "InvalidSpotInstanceRequestID.NotFound":
            return []
        raise
    return [r["SpotInstanceRequestId"] for r in answer["SpotInstanceRequests"]]


def cancel_job_requests(
    ec2: Any, settings: Settings, exec_name: str, execution: str | None, known_request_id: str | None
) -> list[str]:
    """Open/active requests tagged for the job (and execution), plus the one the state names (its tags may lag)."""
    ids = set(_open_request_ids(ec2, _job_filters(settings, exec_name, execution)))
    if known_request_id:
        ids.update(_open_request_ids(ec2, [], [known_request_id]))
    if ids:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=sorted(ids))
    return sorted(ids)


def close_report(s3: Any, bucket: str, status: str) -> bool:
    """Close report.json once; False when it was already closed or there is no bucket yet."""
    try:
        if report.load(s3, bucket).get("status"):
            return False
        report.close(s3, bucket, status)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            return False
        raise
    return True


def delete_secrets_role(iam: Any, settings: Settings, exec_name: str, execution_name: str | None) -> bool:
    """The run's secrets role goes with its end (every caller names the run); False when there was none."""
    if not execution_name:
        return False
    return secrets_role.delete_job_role(iam, secrets_role.role_name(settings.stack_name, exec_name, execution_name))


def stop_job(ec2: Any, s3: Any, sns: Any, settings: Settings, stop: StopOrder, iam: Any = None) -> dict:
    launch_instance = (stop.state.get("launch") or {}).get("instance") or {}
    with transient_errors():
        terminated = terminate_job_instances(ec2, settings, stop.exec_name, stop.execution, stop.spare)
        cancelled = cancel_job_requests(
            ec2, settings, stop.exec_name, stop.execution, launch_instance.get("spot_request_id")
        )
        bucket = (stop.state.get("storage") or {}).get("bucket") or stop.state["job"]["bucket"]
        closed_now = close_report(s3, bucket, stop.status)
        # Named from the run, not from $.storage: the cancel and the execution-event callers have no state.
        role_deleted = iam is not None and delete_secrets_role(
            iam, settings, stop.exec_name, (stop.state.get("execution") or {}).get("name")
        )
    if stop.spare:
        logger.info("spared: finishing its final sync, then it shuts itself down", extra={"instance_id": stop.spare})
    elif launch_instance.get("instance_id") and launch_instance["instance_id"] not in terminated:
        # Either it is already gone, or it lacks this stack's tags and is not ours to terminate.
        logger.info(
            "state's instance not found live with the job's tags", extra={"instance_id": launch_instance["instance_id"]}
        )
    logger.info(
        "job stopped",
        extra={
            "job": stop.exec_name,
            "execution": stop.execution,
            "status": stop.status,
            "terminated": terminated,
            "cancelled_requests": cancelled,
            "report_closed": closed_now,
            "secrets_role_deleted": role_deleted,
        },
    )
    # A second caller for the same end (cancel, then the ABORTED event) finds the report closed: one email.
    if stop.announce and (closed_now or not _bucket_exists(s3, bucket)):
        state = {**stop.state, "cancellation": {"reason": stop.reason, "status": stop.status}}
        notify.publish_event(sns, s3, settings, NotifyEvent.CANCELLED, state)
    return {"terminated": terminated, "cancelled_requests": cancelled}


def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    settings = runtime.settings()
    stop = parse_event(event, settings)
    if stop is None:
        logger.info("no job named by the event; nothing to stop")
        return {"terminated": [], "cancelled_requests": []}
    ec2, s3, sns = runtime.client("ec2"), runtime.client("s3"), runtime.client("sns")
    return stop_job(ec2, s3, sns, settings, stop, runtime.client("iam"))
