"""Ranking pools: capacity first (placement score), then the spec's type order, then the cheaper AZ;
the pool that just reclaimed our instance last."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from spottrain.functions.shared.pools import Pool, rank

AZ_IDS = {"us-east-1a": "use1-az4", "us-east-1b": "use1-az6"}
SUBNETS = {"us-east-1a": "subnet-a", "us-east-1b": "subnet-b"}


class FakeEc2:
    """What EC2 answers about the market: scores per (type, AZ id) and prices per (type, AZ)."""

    def __init__(self, scores: dict | None = None, prices: dict | None = None, scores_refused: bool = False):
        self.scores, self.prices, self.scores_refused = scores or {}, prices or {}, scores_refused

    def get_spot_placement_scores(self, InstanceTypes, SingleAvailabilityZone, **_):
        assert SingleAvailabilityZone and len(InstanceTypes) == 1  # one type at a time, scored per AZ
        if self.scores_refused:
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "GetSpotPlacementScores")
        return {
            "SpotPlacementScores": [
                {"AvailabilityZoneId": az_id, "Score": score}
                for (t, az_id), score in self.scores.items()
                if t == InstanceTypes[0]
            ]
        }

    def describe_spot_price_history(self, InstanceTypes, **_):
        return {
            "SpotPriceHistory": [
                {"InstanceType": t, "AvailabilityZone": az, "SpotPrice": price}
                for (t, az), price in self.prices.items()
                if t in InstanceTypes
            ]
        }


def pools(types=("g5.xlarge", "g6.xlarge")) -> list[Pool]:
    return [Pool(t, SUBNETS[az], az, AZ_IDS[az]) for t in types for az in SUBNETS]


def order(ranked) -> list[str]:
    return [entry.pool.key for entry in ranked]


def test_given_a_later_type_with_more_capacity_then_it_comes_first():
    # Given g6 scores 9 in 1b while every g5 pool scores 5 or less
    ec2 = FakeEc2(
        scores={
            ("g5.xlarge", "use1-az4"): 5,
            ("g5.xlarge", "use1-az6"): 3,
            ("g6.xlarge", "use1-az4"): 5,
            ("g6.xlarge", "use1-az6"): 9,
        }
    )

    # When ranked, Then capacity wins, and at equal scores the spec's first type wins
    assert order(rank(ec2, pools(), "us-east-1")) == [
        "g6.xlarge/subnet-b",
        "g5.xlarge/subnet-a",
        "g6.xlarge/subnet-a",
        "g5.xlarge/subnet-b",
    ]


def test_given_equal_scores_then_the_spec_order_then_the_cheaper_az_decides():
    ec2 = FakeEc2(
        scores={(t, az_id): 7 for t in ("g5.xlarge", "g6.xlarge") for az_id in AZ_IDS.values()},
        prices={
            ("g5.xlarge", "us-east-1a"): "0.40",
            ("g5.xlarge", "us-east-1b"): "0.31",
            ("g6.xlarge", "us-east-1a"): "0.10",
            ("g6.xlarge", "us-east-1b"): "0.12",
        },
    )

    ranked = rank(ec2, pools(), "us-east-1")

    # Then a much cheaper g6 does not beat the preferred g5 at equal capacity; within g5, the cheaper AZ leads
    assert order(ranked) == ["g5.xlarge/subnet-b", "g5.xlarge/subnet-a", "g6.xlarge/subnet-a", "g6.xlarge/subnet-b"]
    assert (ranked[0].score, ranked[0].spot_price) == (7, 0.31)


def test_given_the_pool_that_reclaimed_us_then_it_is_tried_last_whatever_its_score():
    ec2 = FakeEc2(scores={("g5.xlarge", "use1-az4"): 10})

    ranked = rank(ec2, pools(), "us-east-1", demoted="g5.xlarge/subnet-a")

    assert order(ranked)[-1] == "g5.xlarge/subnet-a"
    assert order(ranked)[0] == "g5.xlarge/subnet-b"


@pytest.mark.parametrize("ec2", [FakeEc2(scores_refused=True), FakeEc2()], ids=["scores refused", "no data"])
def test_given_no_scores_or_prices_then_the_spec_and_subnet_order_stands(ec2):
    ranked = rank(ec2, pools(), "us-east-1")

    assert order(ranked) == [p.key for p in pools()]
    assert all(entry.score == 0 and entry.spot_price is None for entry in ranked)
