"""On-demand list prices, the yardstick for a job's reported savings.

An estimate, not a bill: us-east-1, Linux, shared tenancy, USD per hour, as listed on
https://aws.amazon.com/ec2/pricing/on-demand/ (checked 2025-06). Other regions cost more or less;
a type missing here simply reports no savings rather than guessing.
"""
from __future__ import annotations

ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.4xlarge": 1.3232,
    "g6e.xlarge": 1.861,
    "p3.2xlarge": 3.06,
}


def on_demand_price(instance_type: str) -> float | None:
    return ON_DEMAND_USD_PER_HOUR.get(instance_type)
