"""How did the attempt end? SUCCEEDED, FAILED or INTERRUPTED, judged once when its callback wait is over.

The wait ends when the agent answers its task token (success or a CallbackError), when the EC2
state-change handler reports the instance lost, or when Step Functions' HeartbeatSeconds or
TimeoutSeconds runs out; `$.wait` holds the answer or the error. Whatever ended it, the verdict comes
from the markers the agent writes in the job bucket and from the instance's state. The instance is
described before the markers are read: the agent writes completed.json and then shuts the instance
down, so a gone instance whose markers (read afterwards) say nothing really was lost, not finished.

A marker counts only when it names this attempt, this instance and this execution. An instance that
ends without ever having sent a heartbeat never started its agent: that is a failed bootstrap (no
route to S3, a broken AMI), which a relaunch would only repeat, so the job fails once with the
console's last lines, unless EC2 itself reclaimed the instance. An instance still running when its
wait ended without a marker is silent (a hung or frozen agent): it is terminated here, so neither a
relaunch nor the end of the job leaves it running (and billing).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout, markers, spendcap
from spottrain.contract.instances import LIVE_INSTANCE_STATES, UNTERMINATED_INSTANCE_STATES
from spottrain.contract.limits import (
    FINAL_SYNC_WINDOW_MINUTES,
    failure_keep_alive_minutes,
    job_limit,
    keep_alive_minutes,
)
from spottrain.contract.settings import Settings
from spottrain.contract.status import JobStatus
from spottrain.functions.shared import report, runtime, spend
from spottrain.functions.shared.attempts import Attempt, describe_instance, instance_state, marker
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared.logtext import readable, readable_lines
from spottrain.functions.shared.redone import work_redone
from spottrain.functions.shared.spotcost import spot_cost

logger = Logger(service="spottrain-poll-completion")

BOOTSTRAP_FAILED = "bootstrap failed"
# StateReason codes of an instance EC2 took away (a spot reclaim, lost capacity): a relaunch may succeed.
# Anything else that ends an instance before its agent ran (it shut itself down, someone terminated it)
# would end the next one the same way.
RECLAIMED_BY_EC2 = "Server."
# The wait's own timeout: the attempt outran max runtime + keep-alive + margin without its agent stopping it.
WAIT_TIMED_OUT = "States.Timeout"
# Stopped is not gone: the instance keeps its volume (and its bill) until terminated.
STOPPED_STATES = UNTERMINATED_INSTANCE_STATES - LIVE_INSTANCE_STATES
CONSOLE_TAIL_LINES = 25
CONSOLE_LINE_CHARS = 300
MESSAGE_CHARS = 500


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    logger.append_keys(job=event["job"]["exec_name"], execution=event["execution"]["name"])
    with transient_errors():
        return poll_completion(runtime.client("ec2"), runtime.client("s3"), runtime.settings(), event)


def poll_completion(ec2: Any, s3: Any, settings: Settings, state: dict, now: dt.datetime | None = None) -> dict:
    """The state's `poll` value: how the current attempt ended, and what the workflow may do next."""
    now = now or report.utcnow()
    attempt = state["launch"]["attempt"]
    status, detail = training_status(ec2, s3, state, now)
    if status is JobStatus.INTERRUPTED:
        detail |= _work_redone(s3, state, detail.pop("noticed_at", None), now)
    _terminate_earlier_attempts(ec2, settings, state, attempt)
    ended = {key: detail[key] for key in ("last_checkpoint_at", "redone_minutes") if key in detail}
    instance = state["launch"]["instance"]
    if instance.get("lifecycle", "spot") == "spot":
        ended |= spot_cost(ec2, instance, now)
    doc = report.record_end(s3, state["storage"]["bucket"], attempt, status.value, now, ended)
    cap = _spend_cap(state["job"], status, detail, doc, now)
    retry_allowed = cap is None and attempt < job_limit(state["job"], "max_attempts", settings.max_attempts)
    result = {
        "status": status.value,
        "attempt": attempt,
        "retry_allowed": retry_allowed,
        "spend_cap_reached": cap is not None,
        "spend_cap": cap,
        # a job stopped at its spend cap is not kept for debugging: the door would spend past the cap
        "terminate_after_seconds": 0
        if cap
        else kept_minutes(status, state["job"], settings) * settings.seconds_per_minute,
        "detail": detail | {"wait": wait_summary(state.get("wait"))},
    }
    if status is JobStatus.INTERRUPTED and detail.get(markers.FINAL_SYNC_DONE) is False and not retry_allowed:
        # The job ends here: wait out the notice window, then TerminateInstance spares nothing (a real
        # interruption is over by then; an instance that wrote a false marker must not outlive the job).
        result["terminate_after_seconds"] = FINAL_SYNC_WINDOW_MINUTES * settings.seconds_per_minute
        result["final_sync_waited"] = True
    logger.info("judged", extra={"status": result["status"], "attempt": attempt, "wait": result["detail"]["wait"]})
    return result


def _spend_cap(job: dict, status: JobStatus, detail: dict, doc: dict, now: dt.datetime) -> dict | None:
    """{"cap_usd", "spent_usd"} when the cap ends the job: the agent stopped at it, or an interruption
    came when the spend so far already reached it (no relaunch may start then); else None."""
    if detail.get("reason") == spendcap.REASON:
        return {"cap_usd": spend.cap_usd(job), "spent_usd": round(spend.spent_usd(doc, now), 4)}
    return spend.reached(job, doc, now) if status is JobStatus.INTERRUPTED else None


def kept_minutes(status: JobStatus, job: dict, settings: Settings) -> int:
    """Minutes the workflow waits before terminating: keep_alive_minutes after a success, the debug door's
    on_failure.keep_alive_minutes after a failed training (an interrupted instance is gone already)."""
    if status is JobStatus.SUCCEEDED:
        return keep_alive_minutes(job, settings)
    return failure_keep_alive_minutes(job, settings) if status is JobStatus.FAILED else 0


def _work_redone(s3: Any, state: dict, noticed_at: str | None, now: dt.datetime) -> dict:
    """The training this interruption destroyed (`shared/redone.py`), from the notice, else from now."""
    interrupted_at = report.parse_time(noticed_at) if noticed_at else now
    return work_redone(s3, state["storage"]["bucket"], interrupted_at, state["launch"]["instance"]["launched_at"])


def wait_summary(wait: Any) -> dict:
    """How the callback wait ended: the error it failed with, or the answer it got."""
    if isinstance(wait, dict) and "Error" in wait:
        return {"error": wait.get("Error"), "cause": readable(str(wait.get("Cause") or ""))[:MESSAGE_CHARS] or None}
    return {"error": None, "answer": wait if isinstance(wait, dict) else None}


def training_status(ec2: Any, s3: Any, state: dict, now: dt.datetime) -> tuple[JobStatus, dict]:
    instance = state["launch"]["instance"]
    bucket = state["storage"]["bucket"]
    attempt = Attempt.of(state)
    described = describe_instance(ec2, instance["instance_id"])
    current = instance_state(described)
    completed = marker(s3, bucket, layout.COMPLETED_KEY, attempt)
    if completed:
        status = JobStatus.SUCCEEDED if completed.get("exit_code") == 0 else JobStatus.FAILED
        return status, {
            "reason": completed.get("reason", "exit"),
            "exit_code": completed.get("exit_code"),
            "failed_phase": completed.get("failed_phase"),
            "instance_state": current,
            "message": readable(str(completed.get("message") or ""))[:MESSAGE_CHARS] or None,
        }
    interrupted = marker(s3, bucket, layout.INTERRUPTED_KEY, attempt)
    if interrupted:
        # Judged at the notice: the instance is finishing its final sync and shuts itself down; the next
        # attempt's agent waits for final_sync_done before it restores.
        return JobStatus.INTERRUPTED, {
            "reason": "spot-interruption",
            "instance_state": current,
            markers.FINAL_SYNC_DONE: bool(interrupted.get(markers.FINAL_SYNC_DONE, True)),
            "noticed_at": interrupted.get("noticed_at"),
        }
    heartbeat = marker(s3, bucket, layout.HEARTBEAT_KEY, attempt)
    if current not in LIVE_INSTANCE_STATES:
        state_reason = (described or {}).get("StateReason", {}).get("Code", "")
        if current in STOPPED_STATES:
            _terminate(ec2, instance["instance_id"])  # stopped is not gone: it would wait, billing its volume
        if heartbeat is None and not state_reason.startswith(RECLAIMED_BY_EC2):
            return _bootstrap_failed(ec2, instance["instance_id"], current, state_reason or "gone")
        return JobStatus.INTERRUPTED, {
            "reason": "instance-gone",
            "instance_state": current,
            "state_reason": state_reason or None,
        }
    return _silent(ec2, instance, heartbeat, state.get("wait"), now)


def _silent(ec2: Any, instance: dict, heartbeat: dict | None, wait: Any, now: dt.datetime) -> tuple[JobStatus, dict]:
    """The wait ended, the instance still runs, and no marker says why: its agent is hung, frozen or gone."""
    instance_id = instance["instance_id"]
    last_sign = report.parse_time(heartbeat["time"] if heartbeat else instance["launched_at"])
    detail = {
        "instance_state": "running",
        "phase": (heartbeat or {}).get("phase"),
        "heartbeat_age_seconds": max(0, round((now - last_sign).total_seconds())),
        "last_log_line": _last_line((heartbeat or {}).get("last_log_line")),
    }
    logger.warning(
        "instance silent when its wait ended: terminating it",
        extra={"instance_id": instance_id, "wait": wait_summary(wait)},
    )
    _terminate(ec2, instance_id)
    if heartbeat is None:
        return _bootstrap_failed(
            ec2, instance_id, "running", f"no heartbeat {detail['heartbeat_age_seconds']} s after launch, terminated"
        )
    if wait_summary(wait)["error"] == WAIT_TIMED_OUT:
        message = (
            "the attempt outran limits.max_runtime_minutes (plus keep-alive), or its limits.max_cost_usd budget, "
            "and its agent did not stop it"
        )
        return JobStatus.FAILED, detail | {
            "reason": "max_runtime",
            "exit_code": None,
            "failed_phase": detail["phase"],
            "message": message,
        }
    return JobStatus.INTERRUPTED, detail | {"reason": "lost", "stale": True}


def _bootstrap_failed(ec2: Any, instance_id: str, instance_state: str, why: str) -> tuple[JobStatus, dict]:
    logger.warning("bootstrap failed: no heartbeat from the instance", extra={"instance_id": instance_id, "why": why})
    tail, unavailable = console_tail(ec2, instance_id)
    return JobStatus.FAILED, {
        "reason": BOOTSTRAP_FAILED,
        "exit_code": None,
        "failed_phase": "bootstrap",
        "instance_state": instance_state,
        "message": f"instance {instance_id} never started its agent ({why}); see the console output below",
        "console_tail": tail,
        "console_unavailable": unavailable,
    }


def console_tail(ec2: Any, instance_id: str) -> tuple[list[str], str | None]:
    """The last lines of the instance's console output (the bootstrap's only trace), readable; or why not."""
    try:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""  # botocore decodes base64
    except ClientError as exc:
        return [], error_code(exc) or "unavailable"
    lines = [line[:CONSOLE_LINE_CHARS] for line in readable_lines(output)]
    return lines[-CONSOLE_TAIL_LINES:], None if lines else "empty"


def _last_line(text: str | None) -> str | None:
    lines = readable_lines(text or "")
    return lines[-1][:CONSOLE_LINE_CHARS] if lines else None


def _terminate_earlier_attempts(ec2: Any, settings: Settings, state: dict, attempt: int) -> list[str]:
    """Terminate this run's instances of earlier attempts that still run when a later attempt ends.

    An interrupted attempt's instance is left to finish its final sync while the next attempt starts; EC2
    reclaims it two minutes after the notice. One still running a whole attempt later was not reclaimed: its
    interruption marker was false (code running as root on it can write one) and it would bill, and reach the
    job's bucket, until the run ends.
    """
    filters = [
        {"Name": f"tag:{layout.TAG_STACK}", "Values": [settings.stack_name]},
        {"Name": f"tag:{layout.TAG_JOB}", "Values": [state["job"]["exec_name"]]},
        {"Name": f"tag:{layout.TAG_EXECUTION}", "Values": [state["execution"]["name"]]},
        {"Name": "instance-state-name", "Values": sorted(UNTERMINATED_INSTANCE_STATES)},
    ]
    earlier = [
        instance["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
        if _attempt_tag(instance) < attempt
    ]
    if earlier:
        logger.warning("earlier attempts' instances still running: terminating them", extra={"instances": earlier})
        ec2.terminate_instances(InstanceIds=earlier)
    return earlier


def _attempt_tag(instance: dict) -> int:
    tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
    try:
        return int(tags[layout.TAG_ATTEMPT])
    except (KeyError, ValueError):
        return 10**9  # no attempt tag: not judged here


def _terminate(ec2: Any, instance_id: str) -> None:
    try:
        ec2.terminate_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
