"""SummarizeSweep: the sweep's `sweep-report.json` and its summary email, once every variant has ended.

Input: `{"sweep": <the sweep state machine's state: exec_name, metric, goal, variants, results>,
"execution": {"id", "name"}}`; `results[i]` is the Map's output for `variants[i]` (`status`, or
`error`/`cause` when the child execution failed, was stopped or timed out). Each variant's own bucket
gives its metrics (`output/metrics.json`), its cost and attempts (`report.json`) and why it failed
(`status/completed.json`'s message, else the child's error and cause); a variant that
never got that far simply has none. Returns `{"variants", "succeeded", "failed", "best", "bucket", "key"}`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout, names, sweep
from spottrain.contract.settings import Settings
from spottrain.functions.create_bucket import claim_bucket
from spottrain.functions.shared import runtime
from spottrain.functions.shared.awserrors import error_code, transient_errors

logger = Logger(service="spottrain")

SUBJECT_MAX = 100  # SNS rejects longer email subjects


def _read_json(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchBucket", "404", "AccessDenied", "403"):
            return None
        raise
    except ValueError:
        return None  # a half-written or foreign file: the report says "no metrics", not an error


def _child_description(result: dict) -> dict:
    """What `.sync:2` reported of the child: the result itself, or the DescribeExecution JSON in a failure's cause."""
    if "status" in result:
        return {"Status": result["status"], "StartDate": result.get("started"), "StopDate": result.get("stopped")}
    try:
        described = json.loads(result.get("cause") or "")
    except ValueError:
        return {}
    return described if isinstance(described, dict) else {}


def _seconds_between(start: Any, stop: Any) -> float | None:
    try:
        return round((_moment(stop) - _moment(start)).total_seconds(), 1)
    except (TypeError, ValueError):
        return None  # a child that never started has neither


def _moment(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)):  # epoch milliseconds: how `.sync:2` outputs StartDate and StopDate
        return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def child_status(result: dict) -> str:
    """SUCCEEDED, or the child's own end (FAILED, ABORTED, TIMED_OUT) from the `.sync:2` failure's cause."""
    if "status" in result:
        return str(result["status"])
    try:
        return str(json.loads(result.get("cause") or "")["Status"])
    except (ValueError, KeyError, TypeError):
        return str(result.get("error") or "FAILED")  # the child never started (e.g. ExecutionLimitExceeded)


def failure_reason(completed: dict | None, result: dict) -> str | None:
    """Why a variant did not succeed, most specific first: its agent's message in status/completed.json
    (e.g. "limits.max_runtime_minutes=10 reached ..."), else the child execution's own error and cause,
    else the Map's (a child that never started). None for a success."""
    if "status" in result:
        return None
    if completed and completed.get("exit_code"):
        return str(
            completed.get("message") or f"{completed.get('failed_phase')} ended with exit code {completed['exit_code']}"
        )
    described = _child_description(result)
    own = [str(described[key]) for key in ("Error", "Cause") if described.get(key)]
    if own:
        return ": ".join(own)
    if described:  # stopped without an error of its own (e.g. `spottrain cancel`)
        return f"execution {str(described.get('Status', 'ended')).lower()}"
    return ": ".join(str(result[key]) for key in ("error", "cause") if result.get(key)) or None


def _strict(value: Any) -> Any:
    """NaN and infinities as null: sweep-report.json stays strict JSON (https://www.rfc-editor.org/rfc/rfc8259#section-6)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strict(item) for item in value]
    return value


def variant_row(s3: Any, settings: Settings, variant: dict, result: dict, metric: str | None) -> dict:
    bucket = names.bucket_name(settings.bucket_prefix, variant["name"])
    metrics = _read_json(s3, bucket, sweep.METRICS_KEY)
    report = _read_json(s3, bucket, layout.REPORT_KEY) or {}
    return {
        "name": variant["name"],
        "execution_name": variant.get("execution_name"),
        "parameters": variant.get("overrides", {}),
        "status": child_status(result),
        "reason": failure_reason(_read_json(s3, bucket, layout.COMPLETED_KEY), result),
        "seconds": _seconds_between(
            _child_description(result).get("StartDate"), _child_description(result).get("StopDate")
        ),
        "metric": sweep.metric_value(metrics, metric),
        "metrics": _strict(metrics),
        "cost_usd": report.get("estimated_cost_usd"),
        "billable_seconds": report.get("billable_seconds"),
        "attempts": len(report.get("attempts", [])),
        "bucket": bucket,
    }


def build_report(
    s3: Any, settings: Settings, state: dict, started_at: Any = None, now: dt.datetime | None = None
) -> dict:
    """The report; `wall_seconds` (sweep start to now) against `variant_seconds` (the children's own times summed)."""
    metric, goal = state.get("metric"), state.get("goal") or sweep.DEFAULT_GOAL
    rows = [
        variant_row(s3, settings, variant, result, metric)
        for variant, result in zip(state["variants"], state["results"])
    ]
    best = sweep.best_variant([row for row in rows if row["status"] == "SUCCEEDED"], goal)
    return {
        "sweep": state["exec_name"],
        "metric": metric,
        "goal": goal,
        "best": best["name"] if best else None,
        "variants": rows,
        "wall_seconds": _seconds_between(started_at, (now or dt.datetime.now(dt.timezone.utc)).isoformat()),
        "variant_seconds": round(sum(row["seconds"] or 0 for row in rows), 1),
    }


def summary_email(report: dict) -> tuple[str, str]:
    rows = report["variants"]
    succeeded = sum(row["status"] == "SUCCEEDED" for row in rows)
    best = f"; best {report['best']}" if report["best"] else ""
    subject = f"spottrain sweep {report['sweep']}: {succeeded}/{len(rows)} succeeded{best}"[:SUBJECT_MAX]
    lines = [f"Sweep {report['sweep']}: {succeeded} of {len(rows)} variants succeeded."]
    if report["metric"]:
        lines.append(f"Best by {report['metric']} ({report['goal']}): {report['best'] or 'no variant reported it'}.")
    lines.append("")
    for row in rows:
        value = "-" if row["metric"] is None else f"{row['metric']:.4g}"
        cost = "-" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
        parameters = sweep.describe_overrides(row["parameters"])
        lines.append(
            f"{row['name']:<44} {row['status']:<10} {value:>10} {cost:>10}  {row['attempts']} attempt(s)  {parameters}"
        )
        if row.get("reason"):
            lines.append(f"    why: {row['reason']}")
    return subject, "\n".join(lines) + "\n"


def summarize(s3: Any, sns: Any, settings: Settings, event: dict) -> dict:
    state, execution = event["sweep"], event.get("execution") or {}
    report = build_report(s3, settings, state, execution.get("started_at"))
    bucket = sweep.sweep_bucket(settings.bucket_prefix, state["exec_name"])
    with transient_errors():
        claim_bucket(s3, settings, bucket, state["exec_name"], execution.get("name") or "")
        s3.put_object(
            Bucket=bucket,
            Key=sweep.REPORT_KEY,
            ContentType="application/json",
            Body=json.dumps({**report, "execution": execution}, indent=2, sort_keys=True, allow_nan=False).encode(),
        )
        subject, body = summary_email(report)
        sns.publish(TopicArn=settings.topic_arn, Subject=subject, Message=body)
    succeeded = sum(row["status"] == "SUCCEEDED" for row in report["variants"])
    logger.info("sweep summarized", extra={"bucket": bucket, "succeeded": succeeded, "best": report["best"]})
    return {
        "variants": len(report["variants"]),
        "succeeded": succeeded,
        "failed": len(report["variants"]) - succeeded,
        "best": report["best"],
        "bucket": bucket,
        "key": sweep.REPORT_KEY,
    }


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    return summarize(runtime.client("s3"), runtime.client("sns"), runtime.settings(), event)
