"""The job's spend against `limits.max_cost_usd`: what it spent so far, and what an attempt may still spend.

Spent = report.json's estimate (`shared/report.summarize`): finished attempts at their spot price
history, a running one at its launch price, every volume at gp3's rate. An attempt's budget is the
rest of the cap at the launched pool's hourly price plus its volume's, from its launch time. That is
the report's own arithmetic for a running attempt, so the stop is exact while the launch price holds.
Where it can be off: a spot price that rises during the attempt makes the stop late (the job spends
more than the cap by the rise x the time), one that falls makes it early; the report's final cost,
from the price history (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html),
shows the truth. The agent also needs its grace and final sync after `stop_at`, billed too.
Billing granularity (per second, 60 s minimum for Linux:
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-lifecycle.html) is not counted.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Optional

from spottrain.contract import layout, markers, spendcap
from spottrain.functions.shared import report
from spottrain.functions.shared.spotcost import GP3_USD_PER_GB_MONTH, HOURS_PER_MONTH


def cap_usd(job: dict) -> Optional[float]:
    value = (job.get("limits") or {}).get("max_cost_usd")
    return None if value is None else float(value)


def spent_usd(doc: dict, now: dt.datetime, except_attempt: Optional[int] = None) -> float:
    """USD so far over the report's attempts (instance + volume), `except_attempt` left out."""
    attempts = [entry for entry in doc.get("attempts", []) if entry.get("attempt") != except_attempt]
    summary = report.summarize({"attempts": attempts}, now)
    return summary["estimated_cost_usd"] + summary["ebs_cost_usd"]


def hourly_usd(instance: dict) -> float:
    """The launched instance's USD per hour: its launch price plus its gp3 volume's."""
    volume = (instance.get("volume_gb") or 0) * GP3_USD_PER_GB_MONTH / HOURS_PER_MONTH
    return float(instance.get("price_per_hour") or 0) + volume


def budget_seconds(cap: float, spent: float, usd_per_hour: float) -> Optional[float]:
    """Seconds the rest of the cap buys at that price (0 once spent >= cap); None when the price is 0 (no limit)."""
    if usd_per_hour <= 0:
        return None
    return max(0.0, (cap - spent) / usd_per_hour * 3600)


def reached(job: dict, doc: dict, now: dt.datetime) -> Optional[dict]:
    """{"cap_usd", "spent_usd"} when the job's spend so far is at its cap (no relaunch then), else None."""
    cap = cap_usd(job)
    if cap is None:
        return None
    spent = spent_usd(doc, now)
    return {"cap_usd": cap, "spent_usd": round(spent, 4)} if spent >= cap else None


def write_budget(
    s3: Any, bucket: str, job: dict, doc: dict, attempt: int, instance: dict, execution_id: str
) -> Optional[dict]:
    """Write the launched attempt's budget.json (`contract/spendcap.py`); None, and nothing written, without a cap."""
    cap = cap_usd(job)
    if cap is None:
        return None
    launched = report.parse_time(instance["launched_at"])
    spent = spent_usd(doc, launched, except_attempt=attempt)
    price = hourly_usd(instance)
    seconds = budget_seconds(cap, spent, price)
    if seconds is None:
        return None
    identity = markers.identity(attempt, instance["instance_id"], execution_id)
    budget = spendcap.record(identity, cap, spent, round(price, 6), launched + dt.timedelta(seconds=seconds))
    s3.put_object(
        Bucket=bucket, Key=layout.budget_key(attempt), Body=json.dumps(budget).encode(), ContentType="application/json"
    )
    return budget


def email_subject(exec_name: str, poll: dict) -> Optional[str]:
    """The FAILED email's subject when the cap ended the job (`poll.spend_cap`), else None."""
    cap = poll.get("spend_cap") if poll.get("spend_cap_reached") else None
    if not cap:
        return None
    return f"{exec_name} stopped at its spend cap of ${cap['cap_usd']:g} (spent ${cap['spent_usd']:.4f})"


def email_lines(state: dict) -> list[str]:
    """What the cap did, what was kept, and how to go on; [] when the cap did not end the job."""
    poll = state.get("poll") or {}
    cap = poll.get("spend_cap") if poll.get("spend_cap_reached") else None
    if not cap:
        return []
    bucket = (state.get("storage") or {}).get("bucket", "?")
    stopped = (
        "the training was stopped (SIGTERM, then its final sync)"
        if (poll.get("detail") or {}).get("reason") == spendcap.REASON
        else "no new instance was launched after the interruption"
    )
    lines = [
        f"Spend cap: limits.max_cost_usd = ${cap['cap_usd']:g}; spent ${cap['spent_usd']:.4f} "
        f"(report.json's estimate: instances and volumes, all attempts): {stopped}."
    ]
    kept = [f"s3://{bucket}/{layout.OUTPUT_PREFIX}"]
    if (state.get("job") or {}).get("checkpoint_dir"):
        kept.insert(0, f"s3://{bucket}/{layout.CHECKPOINTS_PREFIX}")
    lines.append(f"Kept: {', '.join(kept)}; raise limits.max_cost_usd and run the job again to resume from them.")
    return lines
