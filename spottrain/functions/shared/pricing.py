"""On-demand list prices, the yardstick for a job's reported savings.

First from the AWS Price List Query API (`pricing:GetProducts`, Linux, shared tenancy, no
pre-installed software, in the stack's region; https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/price-changes.html),
cached per (region, type) for the life of the Lambda container; the API answers only in a few regions,
so its client is made for us-east-1 (`PRICE_LIST_API_REGION`). When it cannot answer, the bundled
table below stands in, and the price says so (`source`): us-east-1 list prices, USD per hour, as listed
on https://aws.amazon.com/ec2/pricing/on-demand/ (checked 2025-06). A type in neither reports no
savings rather than a guess.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

PRICE_LIST_API_REGION = "us-east-1"
PRICE_LIST_API = "price-list-api"
BUNDLED_TABLE = "bundled-table (us-east-1, 2025-06)"
_CACHE: dict[tuple[str, str], "OnDemandPrice"] = {}

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
    """The bundled table's price (USD/h), None for a type it lacks."""
    return ON_DEMAND_USD_PER_HOUR.get(instance_type)


@dataclasses.dataclass(frozen=True)
class OnDemandPrice:
    usd_per_hour: float | None
    source: str  # PRICE_LIST_API or BUNDLED_TABLE


def list_price(pricing: Any, region: str, instance_type: str) -> OnDemandPrice:
    """The on-demand price of the type in the region: the Price List API's, else the bundled table's."""
    cached = _CACHE.get((region, instance_type))
    if cached is not None:
        return cached
    try:
        price = _price_list_api(pricing, region, instance_type) if pricing is not None else None
    except (ClientError, BotoCoreError):
        price = None  # the table stands in, labelled; the next container asks again
    if price is None:
        return OnDemandPrice(on_demand_price(instance_type), BUNDLED_TABLE)
    _CACHE[(region, instance_type)] = found = OnDemandPrice(price, PRICE_LIST_API)
    return found


def _price_list_api(pricing: Any, region: str, instance_type: str) -> float | None:
    filters = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    answer = pricing.get_products(
        ServiceCode="AmazonEC2",
        MaxResults=10,
        Filters=[{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in filters.items()],
    )
    for product in answer.get("PriceList", []):
        for term in json.loads(product).get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD") or 0)
                if usd > 0 and dimension.get("unit") == "Hrs":
                    return usd
    return None
