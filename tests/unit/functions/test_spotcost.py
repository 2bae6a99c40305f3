"""An attempt's cost over the time it really ran: spot prices as they changed, and its volume."""

from __future__ import annotations

import datetime as dt

from spottrain.functions.shared import report, spotcost

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


class History:
    """DescribeSpotPriceHistory for one pool: the price in effect at the start, then the changes."""

    def __init__(self, *changes: tuple[dt.datetime, str]):
        self.changes, self.asked = changes, []

    def describe_spot_price_history(self, **kwargs):
        self.asked.append(kwargs)
        return {"SpotPriceHistory": [{"Timestamp": when, "SpotPrice": price} for when, price in self.changes]}


ENTRY = {"instance_type": "g5.xlarge", "az": "us-east-1a", "launched_at": T0.isoformat(), "price_per_hour": 0.4}


def test_given_the_price_changed_mid_attempt_then_each_price_is_paid_for_the_time_it_held():
    # Given $0.40/h in effect since before the launch, $0.80/h from 30 minutes in; the attempt ran 1 hour
    ec2 = History((at(-90), "0.40"), (at(30), "0.80"))

    cost = spotcost.spot_cost(ec2, ENTRY, at(60))

    # Then half an hour at each: $0.20 + $0.40, from the history of that pool over exactly that window
    assert cost == {"spot_cost_usd": 0.6, "spot_cost_source": "spot-price-history"}
    (asked,) = ec2.asked
    assert (asked["AvailabilityZone"], asked["StartTime"], asked["EndTime"]) == ("us-east-1a", T0, at(60))


def test_given_no_history_then_the_launch_price_stands_in_and_says_so():
    assert spotcost.spot_cost(History(), ENTRY, at(90)) == {"spot_cost_usd": 0.6, "spot_cost_source": "launch-price"}


def test_given_a_100_gb_volume_for_730_hours_then_it_costs_a_gp3_month():
    assert spotcost.ebs_cost(100, 730 * 3600) == 8.0
    assert spotcost.ebs_cost(None, 3600) == 0


def test_given_ended_attempts_then_the_summary_uses_their_history_cost_and_adds_the_volume():
    ended = {
        **ENTRY,
        "ended_at": at(60).isoformat(),
        "spot_cost_usd": 0.6,
        "on_demand_price_per_hour": 1.006,
        "volume_gb": 100,
    }

    summary = report.summarize({"attempts": [ended]})

    assert (summary["estimated_cost_usd"], summary["on_demand_cost_usd"]) == (0.6, 1.006)
    assert summary["estimated_savings_usd"] == 0.406 and summary["ebs_cost_usd"] == round(8.0 / 730, 4)
