"""The job's running record, `report.json` in its bucket: one entry per attempt, plus cost estimates.

Written by the workflow as it goes (launch, end of each attempt, close) so that a job that dies
half-way still leaves an honest account of what it used.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from spottrain.contract import layout
from spottrain.functions.shared.spotcost import ebs_cost, parse_time


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def isoformat(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def load(s3: Any, bucket: str) -> dict:
    try:
        body = s3.get_object(Bucket=bucket, Key=layout.REPORT_KEY)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {"attempts": []}
    return json.loads(body)


def save(s3: Any, bucket: str, report: dict) -> None:
    report = {**report, **summarize(report)}
    s3.put_object(
        Bucket=bucket,
        Key=layout.REPORT_KEY,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )


def record_launch(s3: Any, bucket: str, job: str, attempt: int, instance: dict) -> dict:
    """Add (or replace, for a relaunch of the same attempt) the attempt's launch record."""
    report = load(s3, bucket)
    report["job"] = job
    entry = {"attempt": attempt, "outcome": "RUNNING", "ended_at": None, **instance}
    report["attempts"] = [a for a in report["attempts"] if a["attempt"] != attempt] + [entry]
    save(s3, bucket, report)
    return report


def record_capacity_wait(s3: Any, bucket: str, attempt: int, wait: dict, pools_refused: list[str]) -> dict:
    """Add or update (by start time) the attempt's wait for capacity in `capacity_waits`."""
    report = load(s3, bucket)
    entry = {"attempt": attempt, **wait, "pools_refused": pools_refused}
    waits = [w for w in report.get("capacity_waits", []) if w.get("started_at") != wait["started_at"]]
    report["capacity_waits"] = waits + [entry]
    save(s3, bucket, report)
    return report


def record_end(
    s3: Any, bucket: str, attempt: int, outcome: str, ended_at: dt.datetime | None = None, details: dict | None = None
) -> dict:
    """Mark how an attempt ended (SUCCEEDED, FAILED, INTERRUPTED, CANCELLED), with `details` (e.g. work redone); idempotent."""
    report = load(s3, bucket)
    for entry in report["attempts"]:
        if entry["attempt"] == attempt and entry.get("ended_at") is None:
            entry["outcome"] = outcome
            entry["ended_at"] = isoformat(ended_at or utcnow())
            entry.update(details or {})
    save(s3, bucket, report)
    return report


def close(s3: Any, bucket: str, status: str, ended_at: dt.datetime | None = None) -> dict:
    """Final status of the job; any attempt still open ends with it."""
    report = load(s3, bucket)
    moment = ended_at or utcnow()
    for entry in report["attempts"]:
        if entry.get("ended_at") is None:
            entry["outcome"] = status
            entry["ended_at"] = isoformat(moment)
    report["status"] = status
    report["finished_at"] = isoformat(moment)
    save(s3, bucket, report)
    return report


def attempt_seconds(entry: dict, now: dt.datetime | None = None) -> float:
    start = parse_time(entry["launched_at"])
    end = parse_time(entry["ended_at"]) if entry.get("ended_at") else (now or utcnow())
    return max(0.0, (end - start).total_seconds())


def attempt_cost(entry: dict, now: dt.datetime | None = None) -> float:
    """The instance's USD: from the spot price history once the attempt ended, else its launch price."""
    if entry.get("spot_cost_usd") is not None:
        return float(entry["spot_cost_usd"])
    return attempt_seconds(entry, now) / 3600 * float(entry.get("price_per_hour") or 0)


def summarize(report: dict, now: dt.datetime | None = None) -> dict:
    """Billable seconds and estimated cost: each attempt's instance vs the same time on-demand, plus its volume.

    The volume (gp3, `shared/spotcost.py`) costs the same either way, so savings compare the instances.
    """
    seconds = cost = on_demand = ebs = 0.0
    for entry in report.get("attempts", []):
        used = attempt_seconds(entry, now)
        seconds += used
        cost += attempt_cost(entry, now)
        on_demand += used / 3600 * float(entry.get("on_demand_price_per_hour") or 0)
        ebs += ebs_cost(entry.get("volume_gb"), used)
    return {
        "billable_seconds": round(seconds),
        "estimated_cost_usd": round(cost, 4),
        "on_demand_cost_usd": round(on_demand, 4),
        "estimated_savings_usd": round(on_demand - cost, 4),
        "ebs_cost_usd": round(ebs, 4),
    }
