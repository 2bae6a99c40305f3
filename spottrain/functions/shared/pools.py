"""Which pool (instance type x subnet) to try first: capacity first, then the spec's preference, then price.

EC2 Fleet's price-capacity-optimized strategy "identifies the pools with the highest capacity
availability for the number of instances that are launching ... then requests Spot Instances from
the lowest priced of these pools" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-allocation-strategy.html).
spottrain ranks its candidates the same way, keeping the spec's type order as a preference:

    key = (demoted, -placement score, type's position in the spec, spot price, subnet order)

- demoted: the pool that just reclaimed our instance goes last for the next attempt.
- placement score: `GetSpotPlacementScores` per instance type, one AZ at a time (1..10, how likely a
  request of one instance there succeeds; https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-placement-score.html).
  A pool without a score (the call refused, or no score for its AZ) ranks as 0.
- among equal scores the spec's earlier type wins, then the cheaper AZ by the latest
  `DescribeSpotPriceHistory` price (a pool without a price ranks after those with one), then the
  stack's subnet order.
So a later type is chosen first only where EC2 rates its capacity higher than every earlier type's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Iterable

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.functions.shared.awserrors import error_code

logger = Logger(service="spottrain-pools")

LINUX = "Linux/UNIX"


@dataclasses.dataclass(frozen=True)
class Pool:
    instance_type: str
    subnet_id: str
    az: str
    az_id: str = ""

    @property
    def key(self) -> str:
        return pool_key(self.instance_type, self.subnet_id)


def pool_key(instance_type: str, subnet_id: str) -> str:
    return f"{instance_type}/{subnet_id}"


@dataclasses.dataclass(frozen=True)
class Ranked:
    pool: Pool
    score: int  # 0 when EC2 gave none
    spot_price: float | None  # USD per hour, latest

    def as_dict(self) -> dict:
        return {"pool": self.pool.key, "az": self.pool.az, "score": self.score, "spot_price": self.spot_price}


def rank(ec2: Any, pools: list[Pool], region: str, demoted: str | None = None) -> list[Ranked]:
    """The pools, best first (see the module's key); `pools` come in the spec's type order."""
    types = list(dict.fromkeys(pool.instance_type for pool in pools))
    scores = placement_scores(ec2, types, region)
    prices = latest_spot_prices(ec2, types)
    ranked = [Ranked(p, scores.get((p.instance_type, p.az_id), 0), prices.get((p.instance_type, p.az))) for p in pools]
    position = {name: index for index, name in enumerate(types)}
    order = {pool.key: index for index, pool in enumerate(pools)}

    def key(entry: Ranked) -> tuple:
        price = entry.spot_price if entry.spot_price is not None else math.inf
        pool = entry.pool
        return (pool.key == demoted, -entry.score, position[pool.instance_type], price, order[pool.key])

    return sorted(ranked, key=key)


def placement_scores(ec2: Any, types: Iterable[str], region: str) -> dict[tuple[str, str], int]:
    """{(instance type, AZ id): score}; empty for a type EC2 would not score (the ranking goes on without)."""
    scores: dict[tuple[str, str], int] = {}
    for instance_type in types:
        try:
            answer = ec2.get_spot_placement_scores(
                InstanceTypes=[instance_type],
                TargetCapacity=1,
                TargetCapacityUnitType="units",
                SingleAvailabilityZone=True,
                RegionNames=[region],
            )
        except ClientError as exc:
            logger.warning("no spot placement scores", extra={"instance_type": instance_type, "code": error_code(exc)})
            continue
        for entry in answer.get("SpotPlacementScores", []):
            if entry.get("AvailabilityZoneId"):
                scores[(instance_type, entry["AvailabilityZoneId"])] = int(entry.get("Score") or 0)
    return scores


def latest_spot_prices(ec2: Any, types: list[str]) -> dict[tuple[str, str], float]:
    """{(instance type, AZ name): latest Linux spot price in USD per hour}."""
    history = ec2.describe_spot_price_history(
        InstanceTypes=types, ProductDescriptions=[LINUX], StartTime=dt.datetime.now(dt.timezone.utc)
    )
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    for entry in history.get("SpotPriceHistory", []):
        if not entry.get("SpotPrice"):
            continue
        where = (entry["InstanceType"], entry["AvailabilityZone"])
        stamp = entry.get("Timestamp") or ""
        if where not in latest or str(stamp) > str(latest[where][0]):
            latest[where] = (stamp, float(entry["SpotPrice"]))
    return {where: price for where, (_, price) in latest.items()}
