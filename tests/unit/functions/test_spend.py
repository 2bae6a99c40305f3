"""The spend cap's arithmetic: what a job spent (report.json's estimate) and what an attempt may still spend."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from moto import mock_aws

from spottrain.contract import layout, spendcap
from spottrain.functions.shared import spend

LAUNCH = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
INSTANCE = {
    "instance_id": "i-2",
    "instance_type": "g5.xlarge",
    "az": "us-east-1a",
    "lifecycle": "spot",
    "launched_at": LAUNCH.isoformat(),
    "price_per_hour": 0.5,
    "on_demand_price_per_hour": 1.0,
    "volume_gb": 730,
}  # 730 GiB of gp3 = $0.08/h, so the attempt costs $0.58/h
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"


def finished_attempt(cost: float) -> dict:
    """Attempt 1: one hour on a 730 GiB volume ($0.08), its spot cost from the price history."""
    return {
        "attempt": 1,
        "launched_at": (LAUNCH - dt.timedelta(hours=2)).isoformat(),
        "ended_at": (LAUNCH - dt.timedelta(hours=1)).isoformat(),
        "price_per_hour": 9.0,
        "spot_cost_usd": cost,
        "volume_gb": 730,
    }


def test_given_a_price_and_a_volume_then_the_hourly_spend_is_both():
    assert spend.hourly_usd(INSTANCE) == pytest.approx(0.58)
    assert spend.hourly_usd({"price_per_hour": 0.5}) == 0.5


@pytest.mark.parametrize(
    "cap, spent, per_hour, seconds",
    [
        (1.0, 0.42, 0.58, 3600.0),  # the rest buys exactly one hour
        (1.0, 1.0, 0.58, 0.0),  # at the cap: nothing left
        (1.0, 1.5, 0.58, 0.0),  # over it (an attempt ran past its stop): never negative
        (1.0, 0.0, 0.0, None),  # a free instance: no time limit from the cap
    ],
)
def test_given_cap_spent_and_price_then_the_budget_is_the_rest_at_that_price(cap, spent, per_hour, seconds):
    result = spend.budget_seconds(cap, spent, per_hour)
    assert result == (seconds if seconds is None else pytest.approx(seconds))


def test_given_a_finished_and_a_running_attempt_then_spent_is_the_reports_estimate_with_volumes():
    # Given attempt 1 cost $0.30 (history) + $0.08 (volume), attempt 2 runs for 30 min at $0.58/h
    doc = {"attempts": [finished_attempt(0.30), {"attempt": 2, "ended_at": None, **INSTANCE}]}

    # Then spent is what report.json would say, volumes included
    now = LAUNCH + dt.timedelta(minutes=30)
    assert spend.spent_usd(doc, now) == pytest.approx(0.30 + 0.08 + 0.29, abs=1e-4)
    assert spend.spent_usd(doc, now, except_attempt=2) == pytest.approx(0.38, abs=1e-4)
    assert spend.reached({"limits": {"max_cost_usd": 0.5}}, doc, now) == {"cap_usd": 0.5, "spent_usd": 0.67}
    assert spend.reached({"limits": {"max_cost_usd": 1}}, doc, now) is None
    assert spend.reached({"limits": {}}, doc, now) is None


@pytest.fixture
def bucket():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="job-bucket")
        yield s3


def test_given_a_launch_under_a_cap_then_budget_json_stops_the_attempt_where_the_cap_is_reached(bucket):
    # Given attempt 1 spent $0.38 of a $0.96 cap, and attempt 2 launched at $0.58/h
    doc = {"attempts": [finished_attempt(0.30), {"attempt": 2, "ended_at": None, **INSTANCE}]}
    job = {"limits": {"max_cost_usd": 0.96}}

    # When its budget is written
    spend.write_budget(bucket, "job-bucket", job, doc, 2, INSTANCE, EXECUTION)

    # Then the agent reads: stop one hour after the launch ($0.58 more), for this attempt on this instance only
    budget = json.loads(bucket.get_object(Bucket="job-bucket", Key=layout.budget_key(2))["Body"].read())
    assert spendcap.stop_time(budget) == LAUNCH + dt.timedelta(hours=1)
    assert (budget["attempt"], budget["instance_id"], budget["execution"]) == (2, "i-2", EXECUTION)
    assert (budget["cap_usd"], budget["spent_before_usd"], budget["usd_per_hour"]) == (0.96, 0.38, 0.58)


def test_given_no_cap_then_no_budget_is_written(bucket):
    assert spend.write_budget(bucket, "job-bucket", {"limits": {}}, {"attempts": []}, 1, INSTANCE, EXECUTION) is None
    assert bucket.list_objects_v2(Bucket="job-bucket").get("KeyCount") == 0


def test_given_a_spend_cap_stop_when_emailed_then_cap_spent_and_what_was_kept():
    state = {
        "job": {"checkpoint_dir": "ckpt"},
        "storage": {"bucket": "job-bucket"},
        "poll": {
            "spend_cap_reached": True,
            "spend_cap": {"cap_usd": 0.5, "spent_usd": 0.5012},
            "detail": {"reason": spendcap.REASON},
        },
    }
    assert spend.email_subject("pix", state["poll"]) == "pix stopped at its spend cap of $0.5 (spent $0.5012)"
    lines = spend.email_lines(state)
    assert lines[0].startswith("Spend cap: limits.max_cost_usd = $0.5; spent $0.5012")
    assert "the training was stopped" in lines[0]
    assert lines[1].startswith("Kept: s3://job-bucket/checkpoints/, s3://job-bucket/output/")
    assert spend.email_lines({"poll": {"spend_cap_reached": False}}) == []
