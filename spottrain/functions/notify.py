"""Notify: one email (SNS publish) per workflow event, whatever the event.

The 2017 original published in one branch only, so most outcomes went unannounced; here every
NotifyEvent renders a subject and body from whatever the state holds at that point of the flow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.contract.names import redact_credentials
from spottrain.functions.shared import report, spend
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared.debug_door import debug_door_lines
from spottrain.functions.shared import runtime
from spottrain.contract.settings import Settings
from spottrain.functions.shared.logtext import readable_lines
from spottrain.contract.status import JobStatus, NotifyEvent

logger = Logger(service="spottrain")

SUBJECT_MAX = 100  # SNS rejects longer email subjects
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024
CAUSE_MAX_CHARS = 2000
EVENTS_WITH_LOG_TAIL = (NotifyEvent.FAILED, NotifyEvent.ERROR, NotifyEvent.INTERRUPTED)


@dataclasses.dataclass(frozen=True)
class ReportAndLogs:
    """What notify reads from the job bucket besides the state: report.json and the log's last lines."""

    report: dict | None = None
    log_tail: list[str] = dataclasses.field(default_factory=list)
    log_key: str | None = None
    unavailable: tuple[str, ...] = ()


# ----- reading the bucket (tolerant: the email matters more than its details) ------------------


def _bucket(state: dict) -> str | None:
    return (state.get("storage") or {}).get("bucket") or (state.get("job") or {}).get("bucket")


def _attempt(state: dict) -> int:
    return int((state.get("launch") or {}).get("attempt") or 1)


def _read_tail(s3: Any, bucket: str, key: str) -> list[str]:
    answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{LOG_TAIL_BYTES}")
    text = answer["Body"].read().decode("utf-8", errors="replace")
    if not answer.get("ContentRange", "bytes 0-").startswith("bytes 0-"):
        # The range began mid-line, maybe mid-escape-sequence: that first piece is not a line.
        text = text.partition("\n")[2]
    return readable_lines(text)


def read_log_tail(s3: Any, bucket: str, attempt: int, lines: int = LOG_TAIL_LINES) -> tuple[str | None, list[str]]:
    """Last lines of the attempt's command output, across the newest two parts if the newest is short."""
    prefix = layout.attempt_logs_prefix(attempt) + "output-"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = sorted(item["Key"] for page in pages for item in page.get("Contents", []))
    tail: list[str] = []
    for key in reversed(keys[-2:]):
        tail = _read_tail(s3, bucket, key) + tail
        if len(tail) >= lines:
            break
    return (keys[-1] if keys else None), tail[-lines:]


def read_report_and_logs(s3: Any, event: NotifyEvent, state: dict) -> ReportAndLogs:
    bucket = _bucket(state)
    if not bucket:
        return ReportAndLogs()
    details: dict[str, Any] = {}
    unavailable = []
    try:
        details["report"] = report.load(s3, bucket)
    except ClientError as exc:
        unavailable.append(f"report ({error_code(exc)})")
    if event in EVENTS_WITH_LOG_TAIL and state.get("launch"):
        try:
            details["log_key"], details["log_tail"] = read_log_tail(s3, bucket, _attempt(state))
        except ClientError as exc:
            unavailable.append(f"log ({error_code(exc)})")
    if unavailable:
        logger.warning("notify renders without some details", extra={"unavailable": unavailable})
    return ReportAndLogs(**details, unavailable=tuple(unavailable))


# ----- rendering (pure) ----------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _elapsed(details: ReportAndLogs, now: dt.datetime) -> float | None:
    """Wall time from the first launch to the end of the last attempt (or now)."""
    attempts = (details.report or {}).get("attempts") or []
    if not attempts:
        return None
    start = min(report.parse_time(a["launched_at"]) for a in attempts)
    ends = [report.parse_time(a["ended_at"]) if a.get("ended_at") else now for a in attempts]
    return max(0.0, (max(ends) - start).total_seconds())


def _instance_phrase(instance: dict) -> str:
    return f"{instance.get('instance_type', '?')} ({instance.get('lifecycle', 'spot')})"


def _exit_phrase(detail: dict) -> str:
    variable = _unreadable_secret(detail)
    if variable:  # the agent's exit code 1 would hide that the commands never ran
        return f"secret {variable} could not be read"
    if detail.get("exit_code") is not None:  # a clone's exit code is git's: the commands never ran
        return f"{'git clone ' if detail.get('reason') == 'clone_failed' else ''}exit code {detail['exit_code']}"
    return str(detail.get("reason") or "no exit code")


def _unreadable_secret(detail: dict) -> str | None:
    """The variable of a secret the agent could not read (its message starts "secrets.VAR: ..."; it
    never holds the value, see spottrain/agent/secrets.py), or None."""
    if detail.get("reason") != "secret_unreadable":
        return None
    field = str(detail.get("message") or "").split(":", 1)[0]
    return field.split(".", 1)[1] if field.startswith("secrets.") else "(unknown variable)"


def subject_for(event: NotifyEvent, state: dict, details: ReportAndLogs, now: dt.datetime) -> str:
    job = (state.get("job") or {}).get("exec_name") or "job"
    instance = (state.get("launch") or {}).get("instance") or {}
    poll = state.get("poll") or {}
    attempts = f"{_attempt(state)}/{(state.get('job') or {}).get('limits', {}).get('max_attempts', '?')}"
    elapsed = _elapsed(details, now)
    took = f" in {format_duration(elapsed)}" if elapsed is not None else ""
    after = f" after {format_duration(elapsed)}" if elapsed is not None else ""
    if event is NotifyEvent.REQUEST_FULFILLED:
        retry = f", attempt {attempts}" if _attempt(state) > 1 else ""
        found = (state.get("launch") or {}).get("capacity_found_after_seconds")
        waited = f" after a {format_duration(found)} capacity wait" if found is not None else ""
        text = f"{job} started on {_instance_phrase(instance)} in {instance.get('az', '?')}{retry}{waited}"
    elif event is NotifyEvent.CAPACITY_WAIT:
        text = f"{job} is waiting for spot capacity: no allowed pool has room"
    elif event is NotifyEvent.REQUEST_FAILED:
        text = f"{job} could not get an instance: no capacity in any allowed pool"
    elif event is NotifyEvent.INTERRUPTED:
        text = f"{job} interrupted on {_instance_phrase(instance)}, attempt {attempts}; resuming"
    elif event is NotifyEvent.COMPLETED:
        text = f"{job} completed{took} on {_instance_phrase(instance)}"
    elif event is NotifyEvent.FAILED and (spend_subject := spend.email_subject(job, poll)):
        text = spend_subject
    elif event is NotifyEvent.FAILED:
        if poll.get("status") == JobStatus.INTERRUPTED.value:
            text = f"{job} failed: interrupted on its last attempt ({attempts})"
        else:
            text = f"{job} failed ({_exit_phrase(poll.get('detail') or {})}){after}"
    elif event is NotifyEvent.CANCELLED:
        reason = (state.get("cancellation") or {}).get("reason")
        text = f"{job} cancelled" + (f" ({reason})" if reason else "") + after
    else:
        text = f"{job} stopped by an error: {(state.get('error') or {}).get('Error', 'unknown')}"
    return _clean_subject(f"[spottrain] {text}")


def _clean_subject(text: str) -> str:
    """SNS email subjects: printable ASCII, one line, at most 100 characters."""
    ascii_text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return ascii_text if len(ascii_text) <= SUBJECT_MAX else ascii_text[: SUBJECT_MAX - 3] + "..."


def _cause_text(error: dict) -> str:
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        cause = f"{parsed.get('errorType', 'Error')}: {parsed['errorMessage']}"
    return cause if len(cause) <= CAUSE_MAX_CHARS else cause[:CAUSE_MAX_CHARS] + " [...]"


def _money(value: float) -> str:
    return f"${value:,.4f}"


def _cost_lines(details: ReportAndLogs, now: dt.datetime) -> list[str]:
    if not details.report or not details.report.get("attempts"):
        return []
    summary = report.summarize(details.report, now)
    lines = [
        f"Billable time: {format_duration(summary['billable_seconds'])} over {len(details.report['attempts'])} attempt(s)"
    ]
    cost, on_demand = summary["estimated_cost_usd"], summary["on_demand_cost_usd"]
    lines.append(f"Estimated cost: {_money(cost)}")
    if on_demand > 0:
        saved = summary["estimated_savings_usd"]
        lines.append(f"On-demand would cost: {_money(on_demand)}; saved {_money(saved)} ({saved / on_demand:.0%})")
    if summary.get("ebs_cost_usd"):
        lines.append(f"Root volumes (gp3, the same either way): {_money(summary['ebs_cost_usd'])}")
    redone = [
        f"attempt {a['attempt']}: {a['redone_minutes']:g} min"
        for a in details.report["attempts"]
        if a.get("redone_minutes") is not None
    ]
    if redone:
        lines.append(f"Training redone after interruptions: {', '.join(redone)}")
    return lines


def _instance_lines(state: dict) -> list[str]:
    launch = state.get("launch") or {}
    instance = launch.get("instance") or {}
    lines = []
    if instance:
        price = instance.get("price_per_hour")
        priced = f" at {_money(float(price))}/h" if price is not None else ""
        lines.append(
            f"Instance: {instance.get('instance_id', '?')} {_instance_phrase(instance)} in {instance.get('az', '?')}{priced}"
        )
    if launch:
        lines.append(
            f"Attempt: {_attempt(state)} of {(state.get('job') or {}).get('limits', {}).get('max_attempts', '?')}"
        )
    return lines


def _event_lines(event: NotifyEvent, state: dict) -> list[str]:
    launch, bid, poll = state.get("launch") or {}, state.get("bid") or {}, state.get("poll") or {}
    lines = []
    if event is NotifyEvent.REQUEST_FAILED:
        types = ", ".join((state.get("job") or {}).get("instance", {}).get("types", []))
        lines.append(f"Tried instance types: {types or '?'}")
        if launch.get("pools_failed"):
            lines.append(f"Pools without capacity: {', '.join(launch['pools_failed'])}")
        wait = launch.get("capacity_wait") or {}
        if wait.get("waits"):
            lines.append(
                f"Waited for capacity from {wait['started_at']} to {wait.get('ended_at', '?')} "
                f"({wait['waits']} waits; capacity_wait_minutes sets how long)"
            )
        if bid.get("code") or bid.get("message"):
            lines.append(f"Last spot answer: {bid.get('code', '')} {bid.get('message', '')}".rstrip())
    if event is NotifyEvent.CAPACITY_WAIT:
        lines += _capacity_wait_lines(launch)
    if event is NotifyEvent.REQUEST_FULFILLED and launch.get("on_demand_reason"):
        lines.append(f"On-demand because: {launch['on_demand_reason']}")
    if event is NotifyEvent.FAILED:
        lines += spend.email_lines(state)
    detail = poll.get("detail") or {}
    if event in (NotifyEvent.FAILED, NotifyEvent.INTERRUPTED, NotifyEvent.COMPLETED) and detail:
        shown = ", ".join(
            f"{k}={v}"
            for k, v in sorted(detail.items())
            if k != "message" and v is not None and not isinstance(v, (dict, list))
        )
        lines.append(f"Details: {shown}")
        if detail.get("message"):
            lines.append(f"Message: {detail['message']}")
    if event is NotifyEvent.CANCELLED and state.get("cancellation"):
        lines.append(f"Reason: {state['cancellation'].get('reason', 'cancelled')}")
    if event is NotifyEvent.ERROR:
        error = state.get("error") or {}
        lines.append(f"Error: {error.get('Error', 'unknown')}")
        lines.append(f"Cause: {_cause_text(error)}")
    return lines


def _capacity_wait_lines(launch: dict) -> list[str]:
    wait = launch.get("capacity_wait") or {}
    refused = launch.get("pools") or {}
    pools = ", ".join(f"{key} ({record.get('code', '?')})" for key, record in sorted(refused.items()))
    lines = [f"Pools without capacity: {pools or '?'}"]
    lines.append(
        f"Retrying each pool after its back-off (next try in {format_duration(launch.get('wait_seconds') or 0)}) "
        f"until {wait.get('deadline', '?')} (capacity_wait_minutes); you get one email when capacity is found."
    )
    return lines


def _location_lines(state: dict) -> list[str]:
    bucket = _bucket(state)
    if not bucket:
        return []
    lines = [f"Output: s3://{bucket}/{layout.OUTPUT_PREFIX}"]
    if (state.get("job") or {}).get("checkpoint_dir"):
        lines.append(f"Checkpoints: s3://{bucket}/{layout.CHECKPOINTS_PREFIX}")
    if state.get("launch"):
        lines.append(f"Logs: s3://{bucket}/{layout.attempt_logs_prefix(_attempt(state))}")
    lines.append(f"Report: s3://{bucket}/{layout.REPORT_KEY}")
    return lines


def body_for(event: NotifyEvent, state: dict, details: ReportAndLogs, now: dt.datetime) -> str:
    job = state.get("job") or {}
    execution = state.get("execution") or {}
    elapsed = _elapsed(details, now)
    sections = [
        [
            f"Job: {job.get('exec_name', '?')}",
            f"Event: {event.value.replace('_', ' ').lower()}",
            f"Execution: {execution.get('name') or execution.get('id') or '?'}",
        ],
        _instance_lines(state)
        + ([f"Running time: {format_duration(elapsed)} since the first launch"] if elapsed is not None else []),
        _cost_lines(details, now),
        _event_lines(event, state),
        debug_door_lines(state, now) if event is NotifyEvent.FAILED else [],
        _location_lines(state),
    ]
    if details.log_tail:
        sections.append(
            [f"Last {len(details.log_tail)} lines of {details.log_key}:", *("  " + line for line in details.log_tail)]
        )
    console = ((state.get("poll") or {}).get("detail") or {}).get("console_tail")
    if console:  # a bootstrap that failed leaves no log in the bucket: the console is all there is
        instance_id = ((state.get("launch") or {}).get("instance") or {}).get("instance_id", "the instance")
        sections.append(
            [f"Last {len(console)} lines of the console output of {instance_id}:", *("  " + line for line in console)]
        )
    if details.unavailable:
        sections.append([f"Not available: {', '.join(details.unavailable)}"])
    text = "\n\n".join("\n".join(lines) for lines in sections if lines)
    # Training output can echo anything; an email must never carry credentials.
    return redact_credentials(text)


# ----- publishing ------------------------------------------------------------------------------


def publish_event(
    sns: Any, s3: Any, settings: Settings, event: NotifyEvent, state: dict, now: dt.datetime | None = None
) -> dict:
    """Render and publish exactly one message for `event`; returns {"message_id": ...} (None: the job asked for no email)."""
    if (state.get("job") or {}).get("emails") is False:  # a sweep's variant whose sweep sends one summary instead
        logger.info("notification skipped: the job asked for no email", extra={"event": event.value})
        return {"message_id": None}
    moment = now or report.utcnow()
    details = read_report_and_logs(s3, event, state)
    subject = subject_for(event, state, details, moment)
    with transient_errors():
        answer = sns.publish(
            TopicArn=settings.topic_arn, Subject=subject, Message=body_for(event, state, details, moment)
        )
    logger.info(
        "notification sent", extra={"event": event.value, "subject": subject, "message_id": answer["MessageId"]}
    )
    return {"message_id": answer["MessageId"]}


def parse_event(event: dict) -> tuple[NotifyEvent, dict]:
    name = event.get("event")
    try:
        return NotifyEvent(name), event.get("state") or {}
    except ValueError:
        known = ", ".join(item.value for item in NotifyEvent)
        raise ValueError(f"event: {name!r} is not a notify event. Use one of: {known}.") from None


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    sns, s3 = runtime.client("sns"), runtime.client("s3")
    name, state = parse_event(event)
    return publish_event(sns, s3, runtime.settings(), name, state)
