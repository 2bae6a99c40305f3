"""What an attempt's spot instance and its volume cost over the time it actually ran.

Spot: the Linux spot price history of its type in its AZ between launch and end
(`DescribeSpotPriceHistory` returns the prices in effect during the window, the one in effect at its
start included: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html),
each price held until the next change, integrated over the running time. When EC2 returns no history
the launch-time price stands in (`spot_cost_source` says which).
EBS: gp3 at USD 0.08 per GiB-month in us-east-1 (https://aws.amazon.com/ebs/pricing/, checked 2025-06),
a month being 730 hours; an estimate for other regions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


GP3_USD_PER_GB_MONTH = 0.08
HOURS_PER_MONTH = 730
HISTORY = "spot-price-history"
LAUNCH_PRICE = "launch-price"


def spot_cost(ec2: Any, entry: dict, ended_at: dt.datetime) -> dict:
    """{"spot_cost_usd", "spot_cost_source"} for a report attempt entry (instance_type, az, launched_at, price_per_hour)."""
    start = parse_time(entry["launched_at"])
    history = ec2.describe_spot_price_history(
        InstanceTypes=[entry["instance_type"]],
        ProductDescriptions=["Linux/UNIX"],
        AvailabilityZone=entry["az"],
        StartTime=start,
        EndTime=ended_at,
    )["SpotPriceHistory"]
    changes = sorted((_aware(item["Timestamp"]), float(item["SpotPrice"])) for item in history if item.get("SpotPrice"))
    if not changes:
        hours = max(0.0, (ended_at - start).total_seconds()) / 3600
        return {
            "spot_cost_usd": round(hours * float(entry.get("price_per_hour") or 0), 4),
            "spot_cost_source": LAUNCH_PRICE,
        }
    return {"spot_cost_usd": round(integrate(changes, start, ended_at), 4), "spot_cost_source": HISTORY}


def integrate(changes: list[tuple[dt.datetime, float]], start: dt.datetime, end: dt.datetime) -> float:
    """USD for [start, end) at prices (USD/h) that hold from each change's time to the next one's."""
    total = 0.0
    for index, (since, price) in enumerate(changes):
        until = changes[index + 1][0] if index + 1 < len(changes) else end
        # the first price stands for the window's start too: EC2 names the one in effect then
        held = (min(until, end) - (start if index == 0 else max(since, start))).total_seconds()
        total += max(0.0, held) / 3600 * price
    return total


def ebs_cost(volume_gb: int | None, seconds: float) -> float:
    """USD for a gp3 volume of that size over that many seconds (0 without a volume size)."""
    return round((volume_gb or 0) * GP3_USD_PER_GB_MONTH * seconds / 3600 / HOURS_PER_MONTH, 4)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _aware(moment: Any) -> dt.datetime:
    moment = parse_time(moment) if isinstance(moment, str) else moment
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
