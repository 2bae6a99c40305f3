"""Has the launched instance's spot request been fulfilled? FULFILLED, PENDING (wait, bounded) or FAILED.

FAILED always cancels the request and terminates any instance it produced, so a pool given up on
leaves nothing open or running behind it, and ends the attempt's entry in report.json (a relaunch of
the same attempt replaces it; if none follows, the report does not bill a withdrawn instance forever).
An instance that already ran and shut down (its bootstrap failed within seconds) was fulfilled: the
pool had room, and PollCompletion judges what happened on it rather than another pool repeating it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract.instances import ENDED_INSTANCE_STATES
from spottrain.functions.shared import report
from spottrain.functions.shared.attempts import describe_instance
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared import runtime
from spottrain.contract.settings import Settings
from spottrain.contract.status import BidStatus

logger = Logger(service="spottrain-check-bid")

# Spot request status codes that mean "still being worked on" rather than "held" or "closed"
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-request-status.html).
WAITING_CODES = frozenset({"pending-evaluation", "pending-fulfillment", "not-scheduled-yet", "fulfilled"})
OPEN_REQUEST_STATES = frozenset({"open", "active"})
# StateReason codes of an instance that ran and then shut down, by itself or by someone's hand.
SHUT_DOWN_AFTER_RUNNING = frozenset({"Client.InstanceInitiatedShutdown", "Client.UserInitiatedShutdown"})
TIMEOUT_CODE = "fulfillment-timeout"
BID_FAILED_OUTCOME = "BID_FAILED"  # report.json outcome of an attempt whose instance never ran


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    logger.append_keys(job=event["job"]["exec_name"], execution=event["execution"]["name"])
    with transient_errors():
        return check_bid(runtime.client("ec2"), runtime.client("s3"), runtime.settings(), event)


def check_bid(ec2: Any, s3: Any, settings: Settings, state: dict) -> dict:
    """The state's `bid` value for the current launch."""
    instance = state["launch"]["instance"]
    checks = _checks_so_far(state) + 1
    request = _spot_request(ec2, instance.get("spot_request_id"))
    status, code, message = bid_status(request, describe_instance(ec2, instance["instance_id"]))
    if status is BidStatus.PENDING and checks >= settings.bid_max_checks:
        status, code = BidStatus.FAILED, TIMEOUT_CODE
        message = f"still {message} after {checks} checks (BID_MAX_CHECKS={settings.bid_max_checks}); trying elsewhere"
    if status is BidStatus.FAILED:
        withdraw(ec2, instance)
        report.record_end(s3, state["storage"]["bucket"], state["launch"]["attempt"], BID_FAILED_OUTCOME)
    log = logger.warning if status is BidStatus.FAILED else logger.info
    log("bid checked", extra={"status": status.value, "code": code, "checks": checks, "pool": _pool(instance)})
    return {"status": status.value, "code": code, "message": f"{_pool(instance)}: {message}", "checks": checks}


def _checks_so_far(state: dict) -> int:
    # Only a PENDING bid loops back to another check of the same launch: FULFILLED and FAILED are
    # always followed by a new launch, whose checks count afresh.
    previous = state.get("bid") or {}
    return int(previous.get("checks") or 0) if previous.get("status") == BidStatus.PENDING.value else 0


def bid_status(request: dict | None, instance: dict | None) -> tuple[BidStatus, str, str]:
    """Decide from the spot request (None for on-demand) and the instance (None if not visible yet)."""
    request_code = (request or {}).get("Status", {}).get("Code")
    request_message = (request or {}).get("Status", {}).get("Message") or request_code
    instance_state = instance["State"]["Name"] if instance else None
    if instance_state == "running":
        return BidStatus.FULFILLED, request_code or "running", "instance running"
    if instance and instance_state in ENDED_INSTANCE_STATES:
        reason = instance.get("StateReason", {})
        if reason.get("Code") in SHUT_DOWN_AFTER_RUNNING:
            return BidStatus.FULFILLED, reason["Code"], f"instance ran and is {instance_state} already"
        # The request's own code says why (e.g. instance-terminated-no-capacity) once it has moved on.
        if request_code and request_code not in WAITING_CODES:
            return BidStatus.FAILED, request_code, request_message
        return (
            BidStatus.FAILED,
            reason.get("Code", instance_state),
            reason.get("Message") or f"instance {instance_state}",
        )
    if request and (request.get("State") not in OPEN_REQUEST_STATES or request_code not in WAITING_CODES):
        return BidStatus.FAILED, request_code or request.get("State", "unknown"), request_message or "request closed"
    if instance_state is None:
        return BidStatus.PENDING, request_code or "instance-not-visible", "instance not visible yet"
    return BidStatus.PENDING, request_code or instance_state, f"instance {instance_state}"


def withdraw(ec2: Any, instance: dict) -> None:
    """Cancel the request first (cancelling does not stop its instance), then terminate the instance."""
    if instance.get("spot_request_id"):
        _ignore_not_found(ec2.cancel_spot_instance_requests, SpotInstanceRequestIds=[instance["spot_request_id"]])
    _ignore_not_found(ec2.terminate_instances, InstanceIds=[instance["instance_id"]])


def _spot_request(ec2: Any, request_id: str | None) -> dict | None:
    if not request_id:
        return None
    try:
        requests = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidSpotInstanceRequestID.NotFound":
            return None  # EC2 is eventually consistent right after a launch
        raise
    return requests["SpotInstanceRequests"][0] if requests["SpotInstanceRequests"] else None


def _ignore_not_found(call: Any, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except ClientError as exc:
        if not error_code(exc).endswith(".NotFound"):
            raise


def _pool(instance: dict) -> str:
    return f"{instance['instance_type']} in {instance['subnet_id']} ({instance['az']})"
