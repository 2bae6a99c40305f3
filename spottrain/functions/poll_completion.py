"""How is the training doing? RUNNING, SUCCEEDED, FAILED or INTERRUPTED, and how long to wait before asking again.

Read from the markers the agent writes in the job bucket and from the instance's state. The instance is
described before the markers are read: the agent writes completed.json and then shuts the instance down,
so a gone instance whose markers (read afterwards) say nothing really was lost, not finished.

A marker counts only when it names this attempt, this instance and this execution: a marker another
run or instance wrote into the same bucket never decides this one. An instance that ends, or stays
silent until the heartbeat is lost, without ever having sent a heartbeat never started its agent: that
is a failed bootstrap (no route to S3, a broken AMI), which a relaunch would only repeat, so the job
fails once with the console's last lines, unless EC2 itself reclaimed the instance.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout, markers
from spottrain.contract.instances import LIVE_INSTANCE_STATES
from spottrain.functions.shared import report
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared import runtime
from spottrain.contract.settings import Settings
from spottrain.functions.shared.logtext import readable, readable_lines
from spottrain.contract.status import JobStatus

logger = Logger(service="spottrain-poll-completion")

EXECUTION_NAME_LIMIT = 80  # Step Functions' limit on execution names
BOOTSTRAP_FAILED = "bootstrap failed"
# StateReason codes of an instance EC2 took away (a spot reclaim, lost capacity): a relaunch may succeed.
# Anything else that ends an instance before its agent ran (it shut itself down, someone terminated it)
# would end the next one the same way.
RECLAIMED_BY_EC2 = "Server."
CONSOLE_TAIL_LINES = 25
CONSOLE_LINE_CHARS = 300
MESSAGE_CHARS = 500


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    logger.append_keys(job=event["job"]["exec_name"], execution=event["execution"]["name"])
    with transient_errors():
        return poll_completion(runtime.client("ec2"), runtime.client("s3"), runtime.settings(), event)


def poll_completion(ec2: Any, s3: Any, settings: Settings, state: dict, now: dt.datetime | None = None) -> dict:
    """The state's `poll` value: what the current attempt is doing and when to look again."""
    now = now or report.utcnow()
    attempt = state["launch"]["attempt"]
    bucket = state["storage"]["bucket"]
    status, detail = training_status(ec2, s3, settings, state, now)
    if status is not JobStatus.RUNNING:
        report.record_end(s3, bucket, attempt, status.value, now)
    result = _counters(settings, state, status) | {
        "status": status.value,
        "attempt": attempt,
        "retry_allowed": attempt < _job_limit(state["job"], "max_attempts", settings.max_attempts),
        "terminate_after_seconds": _keep_alive_minutes(state["job"], settings) * settings.seconds_per_minute,
        "detail": detail,
    }
    logger.info("polled", extra={k: result[k] for k in ("status", "attempt", "polls", "wait_seconds", "handover")})
    return result


@dataclasses.dataclass(frozen=True)
class Attempt:
    """Whose markers count: this attempt, on this instance, of this execution."""

    number: int
    instance_id: str
    execution_id: str  # as job.json names it, and so the agent's markers

    @classmethod
    def of(cls, state: dict) -> "Attempt":
        return cls(state["launch"]["attempt"], state["launch"]["instance"]["instance_id"], state["execution"]["id"])

    def wrote(self, marker: dict) -> bool:
        return markers.written_by(marker, self.number, self.instance_id, self.execution_id)


def training_status(ec2: Any, s3: Any, settings: Settings, state: dict, now: dt.datetime) -> tuple[JobStatus, dict]:
    instance = state["launch"]["instance"]
    bucket = state["storage"]["bucket"]
    attempt = Attempt.of(state)
    described = _describe_instance(ec2, instance["instance_id"])
    instance_state = described["State"]["Name"] if described else "missing"
    completed = _marker(s3, bucket, layout.COMPLETED_KEY, attempt)
    if completed:
        status = JobStatus.SUCCEEDED if completed.get("exit_code") == 0 else JobStatus.FAILED
        return status, {"reason": completed.get("reason", "exit"), "exit_code": completed.get("exit_code"),
                        "failed_phase": completed.get("failed_phase"), "instance_state": instance_state,
                        "message": readable(str(completed.get("message") or ""))[:MESSAGE_CHARS] or None}
    if _marker(s3, bucket, layout.INTERRUPTED_KEY, attempt):
        return JobStatus.INTERRUPTED, {"reason": "spot-interruption", "instance_state": instance_state}
    heartbeat = _marker(s3, bucket, layout.HEARTBEAT_KEY, attempt)
    if instance_state not in LIVE_INSTANCE_STATES:
        state_reason = (described or {}).get("StateReason", {}).get("Code", "")
        if heartbeat is None and not state_reason.startswith(RECLAIMED_BY_EC2):
            return _bootstrap_failed(ec2, instance["instance_id"], instance_state, state_reason or "gone")
        return JobStatus.INTERRUPTED, {"reason": "instance-gone", "instance_state": instance_state,
                                       "state_reason": state_reason or None}
    return _status_from_heartbeat(ec2, settings, instance, heartbeat, now)


def _bootstrap_failed(ec2: Any, instance_id: str, instance_state: str, why: str) -> tuple[JobStatus, dict]:
    logger.warning("bootstrap failed: no heartbeat from the instance", extra={"instance_id": instance_id, "why": why})
    tail, unavailable = console_tail(ec2, instance_id)
    return JobStatus.FAILED, {
        "reason": BOOTSTRAP_FAILED, "exit_code": None, "failed_phase": "bootstrap", "instance_state": instance_state,
        "message": f"instance {instance_id} never started its agent ({why}); see the console output below",
        "console_tail": tail, "console_unavailable": unavailable,
    }


def console_tail(ec2: Any, instance_id: str) -> tuple[list[str], str | None]:
    """The last lines of the instance's console output (the bootstrap's only trace), readable; or why not."""
    try:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""  # botocore decodes base64
    except ClientError as exc:
        return [], error_code(exc) or "unavailable"
    lines = [line[:CONSOLE_LINE_CHARS] for line in readable_lines(output)]
    return lines[-CONSOLE_TAIL_LINES:], None if lines else "empty"


def _status_from_heartbeat(
    ec2: Any, settings: Settings, instance: dict, heartbeat: dict | None, now: dt.datetime
) -> tuple[JobStatus, dict]:
    # No heartbeat yet: the instance is still booting; the clock runs from its launch.
    last_sign = report.parse_time(heartbeat["time"] if heartbeat else instance["launched_at"])
    age = max(0, round((now - last_sign).total_seconds()))
    detail = {"instance_state": "running", "phase": (heartbeat or {}).get("phase"), "heartbeat_age_seconds": age,
              "last_log_line": _last_line((heartbeat or {}).get("last_log_line"))}
    if age > settings.heartbeat_lost_seconds:
        # Terminated now so that neither a relaunch nor the end of the job leaves this one running (and billing).
        logger.warning("instance lost: no heartbeat", extra={"instance_id": instance["instance_id"], "age": age})
        _terminate(ec2, instance["instance_id"])
        if heartbeat is None:
            return _bootstrap_failed(ec2, instance["instance_id"], "running",
                                     f"no heartbeat {age} s after launch, terminated")
        return JobStatus.INTERRUPTED, detail | {"reason": "lost", "stale": True}
    return JobStatus.RUNNING, detail | {"stale": age > settings.heartbeat_stale_seconds}


def _last_line(text: str | None) -> str | None:
    lines = readable_lines(text or "")
    return lines[-1][:CONSOLE_LINE_CHARS] if lines else None


def _counters(settings: Settings, state: dict, status: JobStatus) -> dict:
    """Poll counts, the next wait and the hand-over decision.

    `polls` counts this execution's polls (its history budget); `attempt_polls` counts the current
    attempt's, across hand-overs, so the backoff does not restart at the minimum after one.
    """
    previous = state.get("poll") or {}
    same_attempt = previous.get("attempt") == state["launch"]["attempt"]
    attempt_polls = (previous.get("attempt_polls", 0) if same_attempt else 0) + 1
    polls = previous.get("polls", 0) + 1
    handovers = previous.get("handovers", state["execution"].get("handovers", 0))
    handover = status is JobStatus.RUNNING and polls >= settings.polls_per_execution
    if handover:
        handovers += 1
    return {
        "wait_seconds": next_wait(settings, attempt_polls - 1),
        "polls": 0 if handover else polls,
        "attempt_polls": attempt_polls,
        "handover": handover,
        "handover_name": handover_name(state["execution"]["name"], handovers) if handover else None,
        "handovers": handovers,
    }


def next_wait(settings: Settings, k: int) -> int:
    """poll_min * backoff^k, capped at poll_max; whole seconds, as Wait's SecondsPath requires."""
    wait = float(settings.poll_min_seconds)
    for _ in range(k):
        if wait >= settings.poll_max_seconds:
            break
        wait *= settings.poll_backoff
    return int(min(wait, settings.poll_max_seconds))


def handover_name(first_name: str, handovers: int) -> str:
    suffix = f"-h{handovers}"
    return first_name[: EXECUTION_NAME_LIMIT - len(suffix)] + suffix


def _job_limit(job: dict, name: str, default: int) -> int:
    return int((job.get("limits") or {}).get(name) or default)


def _keep_alive_minutes(job: dict, settings: Settings) -> int:
    minutes = job.get("keep_alive_minutes")
    return int(settings.default_keep_alive_minutes if minutes is None else minutes)


def _marker(s3: Any, bucket: str, key: str, attempt: Attempt) -> dict | None:
    """The marker if this attempt's instance wrote it for this execution; anything else never decides it."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    marker = json.loads(body)
    return marker if isinstance(marker, dict) and attempt.wrote(marker) else None


def _describe_instance(ec2: Any, instance_id: str) -> dict | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return None
        raise
    instances = [i for r in reservations for i in r["Instances"]]
    return instances[0] if instances else None


def _terminate(ec2: Any, instance_id: str) -> None:
    try:
        ec2.terminate_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) != "InvalidInstanceID.NotFound":
            raise
