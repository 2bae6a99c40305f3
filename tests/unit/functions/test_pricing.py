"""On-demand prices: the Price List API's for the stack's region, cached; the bundled table only as a
labelled stand-in."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from spottrain.functions.shared import pricing


def product(usd: str, unit: str = "Hrs") -> str:
    """One PriceList entry as GetProducts returns it: a JSON document in a string."""
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": "g5.xlarge"}},
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd}}}
                    }
                }
            },
        }
    )


@pytest.fixture
def price_list(monkeypatch):
    monkeypatch.setattr(pricing, "_CACHE", {})
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_given_the_price_list_api_answers_then_its_regional_price_is_used_and_cached(price_list):
    # Given the Price List API knows g5.xlarge in eu-west-1 (asked once, with the region's code)
    client, stubber = price_list
    stubber.add_response(
        "get_products",
        {"PriceList": [product("1.123")], "FormatVersion": "aws_v1"},
        {"ServiceCode": "AmazonEC2", "MaxResults": 10, "Filters": ANY},
    )

    # When the price is asked twice
    first = pricing.list_price(client, "eu-west-1", "g5.xlarge")
    second = pricing.list_price(client, "eu-west-1", "g5.xlarge")

    # Then both come from the API (the second from the cache: no second call is stubbed)
    assert first == second == pricing.OnDemandPrice(1.123, pricing.PRICE_LIST_API)


class RecordingPricing:
    """Keeps what GetProducts was asked."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def get_products(self, **kwargs) -> dict:
        self.asked.append(kwargs)
        return {"PriceList": [product("0.0001", unit="Quantity"), product("1.2")]}


def test_given_the_filters_then_they_pin_linux_shared_tenancy_in_the_stacks_region(monkeypatch):
    monkeypatch.setattr(pricing, "_CACHE", {})
    client = RecordingPricing()

    price = pricing.list_price(client, "ap-northeast-1", "g6.xlarge")

    (asked,) = client.asked
    assert asked["ServiceCode"] == "AmazonEC2"
    assert {(f["Field"], f["Value"]) for f in asked["Filters"]} == {
        ("instanceType", "g6.xlarge"),
        ("regionCode", "ap-northeast-1"),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("licenseModel", "No License required"),
    }
    assert price.usd_per_hour == 1.2  # the hourly dimension, not another unit's


@pytest.mark.parametrize("answer", ["error", "empty"])
def test_given_no_answer_from_the_api_then_the_bundled_table_stands_in_labelled_and_uncached(price_list, answer):
    client, stubber = price_list
    for _ in range(2):
        if answer == "error":
            stubber.add_client_error("get_products", service_error_code="AccessDeniedException", http_status_code=400)
        else:
            stubber.add_response("get_products", {"PriceList": []})

    first = pricing.list_price(client, "us-east-1", "g5.xlarge")
    again = pricing.list_price(client, "us-east-1", "g5.xlarge")  # asked again: a fallback is not cached

    assert first == again == pricing.OnDemandPrice(1.006, pricing.BUNDLED_TABLE)
    assert "bundled" in pricing.BUNDLED_TABLE
