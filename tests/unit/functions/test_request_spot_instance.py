"""request_spot_instance: one spot instance from the launch template, first pool with room, honest report."""

from __future__ import annotations

from spottrain.functions.shared import runtime

import base64
import json
import datetime as dt
import json

import boto3
import pytest
import urllib.parse
from botocore.exceptions import ClientError
from botocore.stub import ANY

from spottrain.functions import request_spot_instance as rsi
from spottrain.functions.shared import secrets_role
from spottrain.functions.shared.bucket_policy import allowed_instances
from spottrain.contract import layout, limits
from spottrain.contract.status import TransientError
from spot_fixtures import (  # noqa: F401 (aws, clients, stubbed_ec2: fixtures)
    BUCKET,
    EXEC_NAME,
    LAMBDA_CONTEXT,
    aws,
    clients,
    job_state,
    launch_template,
    make_settings,
    read_report,
    stubbed_ec2,
)

SUBNETS = [("subnet-a", "us-east-1a"), ("subnet-b", "us-east-1b")]
AZ_IDS = {"us-east-1a": "use1-az4", "us-east-1b": "use1-az6"}
LAUNCH_TIME = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def tags_of(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


# ----- against moto: the real request, tags, user data, report ---------------------------------


def test_given_a_fresh_job_when_requested_then_one_tagged_spot_instance_runs_from_the_template(aws):
    ec2, s3 = aws
    settings = make_settings(launch_template_id=launch_template(ec2))

    launch = rsi.request_instance(ec2, s3, settings, job_state())

    assert launch["status"] == "LAUNCHED" and launch["attempt"] == 1 and launch["pools_failed"] == []
    assert launch["wait_seconds"] == settings.bid_wait_seconds
    instance = ec2.describe_instances(InstanceIds=[launch["instance"]["instance_id"]])["Reservations"][0]["Instances"][
        0
    ]
    assert instance["InstanceType"] == "g5.xlarge"  # the job's first choice
    assert instance["InstanceLifecycle"] == "spot" and launch["instance"]["lifecycle"] == "spot"
    assert {
        layout.TAG_STACK: "SpotTrainTest",
        layout.TAG_JOB: EXEC_NAME,
        layout.TAG_EXECUTION: "run-1",
        layout.TAG_ATTEMPT: "1",
        "aws:ec2launchtemplate:id": settings.launch_template_id,
    }.items() <= tags_of(instance).items()
    assert instance["SubnetId"] == launch["instance"]["subnet_id"]


def test_given_a_launch_then_the_root_volume_is_encrypted_sized_and_tagged(aws):
    ec2, s3 = aws
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())

    volumes = ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [launch["instance"]["instance_id"]]}]
    )["Volumes"]
    assert [(v["Size"], v["Encrypted"]) for v in volumes] == [(120, True)]
    assert tags_of(volumes[0])[layout.TAG_JOB] == EXEC_NAME


def test_given_a_launch_then_user_data_carries_bucket_attempt_and_agent_but_no_secrets(aws):
    ec2, s3 = aws
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())

    encoded = ec2.describe_instance_attribute(InstanceId=launch["instance"]["instance_id"], Attribute="userData")[
        "UserData"
    ]["Value"]
    user_data = base64.b64decode(encoded).decode()
    assert BUCKET in user_data and "agent/abc123.zip" in user_data and "spottrain-assets" in user_data
    for secret_marker in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "testing", "python train.py"):
        assert secret_marker not in user_data


def test_given_a_launch_then_the_attempts_wait_is_bounded_by_the_heartbeat_and_the_jobs_runtime(aws):
    # Given a job of 90 minutes' runtime and 5 minutes' keep-alive, on a stack with 300 s heartbeat timeout
    ec2, s3 = aws
    settings = make_settings(launch_template_id=launch_template(ec2), heartbeat_lost_seconds=300)
    state = job_state(limits={"max_runtime_minutes": 90, "max_attempts": 3}, keep_alive_minutes=5)

    # When the attempt launches
    launch = rsi.request_instance(ec2, s3, settings, state)

    # Then its callback wait times out on 300 s of silence, or after runtime + keep-alive + the bootstrap margin
    assert launch["heartbeat_timeout_seconds"] == 300
    assert launch["wait_timeout_seconds"] == (90 + 5 + 30) * 60


def test_given_a_launch_then_report_json_records_the_attempt_with_prices(aws):
    ec2, s3 = aws
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())

    entry = read_report(s3)["attempts"][0]
    history = ec2.describe_spot_price_history(
        InstanceTypes=["g5.xlarge"],
        ProductDescriptions=["Linux/UNIX"],
        Filters=[{"Name": "availability-zone", "Values": [launch["instance"]["az"]]}],
    )["SpotPriceHistory"]
    assert entry["attempt"] == 1 and entry["outcome"] == "RUNNING"
    assert entry["instance_id"] == launch["instance"]["instance_id"]
    assert entry["price_per_hour"] == float(history[0]["SpotPrice"])
    assert entry["on_demand_price_per_hour"] == 1.006  # g5.xlarge, us-east-1 list price
    assert dt.datetime.fromisoformat(entry["launched_at"]).tzinfo is not None


def test_given_the_handler_with_stack_environment_when_invoked_then_it_launches(aws, monkeypatch):
    ec2, _ = aws
    monkeypatch.setenv("STACK_NAME", "SpotTrainEnv")
    monkeypatch.setenv("BUCKET_PREFIX", "spottrain-123456789012")
    monkeypatch.setenv("LAUNCH_TEMPLATE_ID", launch_template(ec2))
    monkeypatch.setenv("AGENT_BUCKET", "spottrain-assets")
    monkeypatch.setenv("AGENT_KEY", "agent/abc.zip")
    runtime.settings.cache_clear()
    try:
        launch = rsi.handler(job_state(), LAMBDA_CONTEXT)
    finally:
        runtime.settings.cache_clear()
    instance = ec2.describe_instances(InstanceIds=[launch["instance"]["instance_id"]])["Reservations"][0]["Instances"][
        0
    ]
    assert tags_of(instance)[layout.TAG_STACK] == "SpotTrainEnv"


# ----- per-pool answers moto cannot give: botocore Stubber ---------------------------------------


def expect_subnets(stubber, types=("g5.xlarge", "g4dn.xlarge"), scores: dict | None = None, prices: dict | None = None):
    """The subnets, then what ranking reads: a placement score call per type, one spot price history.

    `scores`: {(type, az id): score}; `prices`: {(type, az): "USD/h"}; unset, every pool has neither.
    """
    stubber.add_response(
        "describe_subnets",
        {"Subnets": [{"SubnetId": s, "AvailabilityZone": az, "AvailabilityZoneId": AZ_IDS[az]} for s, az in SUBNETS]},
        {"SubnetIds": [s for s, _ in SUBNETS]},
    )
    for instance_type in types:
        answer = [
            {"AvailabilityZoneId": az_id, "Region": "us-east-1", "Score": score}
            for (scored, az_id), score in (scores or {}).items()
            if scored == instance_type
        ]
        stubber.add_response(
            "get_spot_placement_scores",
            {"SpotPlacementScores": answer},
            {
                "InstanceTypes": [instance_type],
                "TargetCapacity": 1,
                "TargetCapacityUnitType": "units",
                "SingleAvailabilityZone": True,
                "RegionNames": ["us-east-1"],
            },
        )
    history = [
        {"InstanceType": t, "AvailabilityZone": az, "SpotPrice": price, "ProductDescription": "Linux/UNIX"}
        for (t, az), price in (prices or {}).items()
    ]
    stubber.add_response(
        "describe_spot_price_history",
        {"SpotPriceHistory": history},
        {"InstanceTypes": list(types), "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY},
    )


def run_params(instance_type: str, subnet: str, spot: bool = True) -> dict:
    params = {
        "LaunchTemplate": {"LaunchTemplateId": "lt-0123456789abcdef0", "Version": "$Latest"},
        "InstanceType": instance_type,
        "SubnetId": subnet,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": ANY,
        "TagSpecifications": ANY,
        "BlockDeviceMappings": ANY,
    }
    if spot:
        params["InstanceMarketOptions"] = ANY
    return params


def expect_no_capacity(
    stubber, instance_type: str, subnet: str, code: str = "InsufficientInstanceCapacity", spot: bool = True
):
    # EC2 answers capacity shortages with HTTP 500: they must still count as "this pool failed".
    stubber.add_client_error(
        "run_instances",
        service_error_code=code,
        service_message=f"no {instance_type}",
        http_status_code=500 if code == "InsufficientInstanceCapacity" else 400,
        expected_params=run_params(instance_type, subnet, spot),
    )


def expect_launch(stubber, instance_type: str, subnet: str, spot: bool = True):
    instance = {"InstanceId": "i-0abc", "LaunchTime": LAUNCH_TIME}
    if spot:
        instance |= {"InstanceLifecycle": "spot", "SpotInstanceRequestId": "sir-123"}
    stubber.add_response("run_instances", {"Instances": [instance]}, run_params(instance_type, subnet, spot))


def stub_settings(**overrides):
    return make_settings(subnet_ids=tuple(s for s, _ in SUBNETS), **overrides)


def test_given_no_capacity_in_the_first_pools_when_requested_then_the_next_pool_in_order_launches(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber, prices={("g4dn.xlarge", "us-east-1a"): "0.3120"})
    expect_no_capacity(stubber, "g5.xlarge", "subnet-a")
    expect_no_capacity(stubber, "g5.xlarge", "subnet-b", code="SpotMaxPriceTooLow")
    expect_launch(stubber, "g4dn.xlarge", "subnet-a")

    launch = rsi.request_instance(ec2, s3, stub_settings(), job_state())

    assert launch["status"] == "LAUNCHED"
    assert launch["pools_failed"] == ["g5.xlarge/subnet-a", "g5.xlarge/subnet-b"]
    assert {
        "instance_type": "g4dn.xlarge",
        "subnet_id": "subnet-a",
        "az": "us-east-1a",
        "spot_request_id": "sir-123",
        "price_per_hour": 0.312,
        "on_demand_price_per_hour": 0.526,
        "launched_at": "2026-01-01T12:00:00+00:00",
    }.items() <= launch["instance"].items()


NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def later(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def relaunch_after_failed_bid(pools: dict) -> dict:
    """The state when g5.xlarge in subnet-b failed its bid, and `pools` had refused before."""
    state = job_state()
    state["launch"] = {
        "status": "LAUNCHED",
        "attempt": 1,
        "pools": pools,
        "wait_seconds": 15,
        "instance": {"instance_id": "i-old", "instance_type": "g5.xlarge", "subnet_id": "subnet-b", "az": "us-east-1b"},
    }
    state["bid"] = {"status": "FAILED", "code": "capacity-not-available", "message": "", "checks": 1}
    return state


def refused(at: dt.datetime, retry_after: float, failures: int = 1) -> dict:
    return {
        "failures": failures,
        "code": "InsufficientInstanceCapacity",
        "failed_at": at.isoformat(),
        "retry_at": (at + dt.timedelta(seconds=retry_after)).isoformat(),
    }


def test_given_pools_in_their_back_off_when_relaunching_then_they_are_skipped(aws, stubbed_ec2):
    # Given g5 in subnet-a refused 10 s ago (back-off 60 s) and g5 in subnet-b just failed its bid
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = relaunch_after_failed_bid({"g5.xlarge/subnet-a": refused(later(-10), 60)})
    expect_subnets(stubber)
    expect_launch(stubber, "g4dn.xlarge", "subnet-a")  # neither g5 pool is asked

    # When the attempt relaunches
    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    # Then the next due pool launches, the attempt is kept, and the failed bid counts as its pool's refusal
    assert launch["attempt"] == 1 and launch["instance"]["instance_type"] == "g4dn.xlarge"
    assert launch["pools_failed"] == ["g5.xlarge/subnet-a", "g5.xlarge/subnet-b"]
    assert launch["pools"]["g5.xlarge/subnet-b"]["code"] == "capacity-not-available"
    assert launch["pools"]["g5.xlarge/subnet-b"]["retry_at"] == later(60).isoformat()


def test_given_a_pool_whose_back_off_expired_when_relaunching_then_it_is_tried_again_and_forgiven(aws, stubbed_ec2):
    # Given g5 in subnet-a refused twice, its back-off (2 min) over
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = relaunch_after_failed_bid({"g5.xlarge/subnet-a": refused(later(-121), 120, failures=2)})
    expect_subnets(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a")

    # When the attempt relaunches
    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    # Then the job's first choice launches again: a refusal is not a ban, and its success clears the record
    assert launch["instance"]["instance_type"] == "g5.xlarge" and launch["instance"]["subnet_id"] == "subnet-a"
    assert list(launch["pools"]) == ["g5.xlarge/subnet-b"]


IN_SPEC_ORDER = [(t, subnet) for t in ("g5.xlarge", "g4dn.xlarge") for subnet, _ in SUBNETS]


def expect_every_pool_full(stubber, order=IN_SPEC_ORDER) -> None:
    """Both of the job's types in both subnets answer InsufficientInstanceCapacity, asked in this order."""
    expect_subnets(stubber)
    for instance_type, subnet in order:
        expect_no_capacity(stubber, instance_type, subnet)


def test_given_every_pool_full_and_no_wait_allowed_then_exhausted_with_nothing_launched(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)

    launch = rsi.request_instance(ec2, s3, stub_settings(), job_state(capacity_wait_minutes=0))

    assert launch["status"] == "EXHAUSTED" and launch["instance"] is None
    assert len(launch["pools_failed"]) == 4
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # no report of a launch that never was


def test_given_no_spot_capacity_and_job_and_stack_allow_on_demand_then_on_demand_in_the_first_pool(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a", spot=False)  # run_params(spot=False): no market options
    state = job_state(
        instance={"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": True, "volume_gb": 120},
        capacity_wait_minutes=0,
    )  # the fallback comes once the wait for spot capacity is over

    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=True), state)

    assert launch["status"] == "LAUNCHED"
    assert launch["instance"]["lifecycle"] == "on-demand" and launch["instance"]["spot_request_id"] is None
    assert launch["instance"]["price_per_hour"] == launch["instance"]["on_demand_price_per_hour"] == 1.006
    assert read_report(s3)["attempts"][0]["lifecycle"] == "on-demand"


def test_given_the_job_asks_for_on_demand_but_the_stack_forbids_it_then_exhausted(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)
    state = job_state(
        instance={"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": True, "volume_gb": 120},
        capacity_wait_minutes=0,
    )

    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=False), state)

    assert launch["status"] == "EXHAUSTED"


def test_given_every_pool_full_when_the_job_may_wait_then_it_waits_a_minute_and_the_report_shows_it(aws, stubbed_ec2):
    # Given every pool refuses and the job may wait 30 minutes (a minute lasts 60 s)
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)

    # When the attempt is requested
    launch = rsi.request_instance(ec2, s3, stub_settings(), job_state(capacity_wait_minutes=30), now=NOW)

    # Then it waits until the pools' one-minute back-off is over, with the window's deadline set
    assert launch["status"] == "WAITING" and launch["instance"] is None and launch["wait_seconds"] == 60
    assert launch["capacity_wait_begins"] is True  # the workflow emails once, now
    assert launch["capacity_wait"] == {
        "started_at": NOW.isoformat(),
        "deadline": later(1800).isoformat(),
        "waits": 1,
        "outcome": "WAITING",
    }
    # And report.json shows the wait, with the pools that refused
    (entry,) = read_report(s3)["capacity_waits"]
    assert entry["outcome"] == "WAITING" and len(entry["pools_refused"]) == 4 and entry["attempt"] == 1


def waiting_state(started: dt.datetime, window_seconds: float, waits: int, retry_after: float) -> dict:
    """The state after `waits` waits that began at `started`: every pool refused, due `retry_after` s from then."""
    state = job_state(capacity_wait_minutes=30)
    pools = {f"{t}/{s}": refused(started, retry_after) for t in ("g5.xlarge", "g4dn.xlarge") for s, _ in SUBNETS}
    wait = {
        "started_at": started.isoformat(),
        "deadline": (started + dt.timedelta(seconds=window_seconds)).isoformat(),
        "waits": waits,
        "outcome": "WAITING",
    }
    state["launch"] = {
        "status": "WAITING",
        "attempt": 1,
        "instance": None,
        "pools": pools,
        "capacity_wait": wait,
        "wait_seconds": retry_after,
    }
    state["bid"] = {"status": "FAILED", "code": "stale", "checks": 1}  # from an earlier launch: not counted again
    return state


def test_given_a_wait_when_a_pool_has_room_again_then_it_launches_and_says_how_long_it_waited(aws, stubbed_ec2):
    # Given the attempt has waited 3 times since 200 s ago, and now every pool is due again
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = waiting_state(later(-200), 1800, waits=3, retry_after=120)
    expect_subnets(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a")

    # When the attempt is requested again
    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    # Then the first choice launches, the wait ends FOUND after 200 s, and report.json keeps it
    assert launch["status"] == "LAUNCHED" and launch["capacity_found_after_seconds"] == 200
    assert launch["capacity_wait"]["outcome"] == "FOUND" and launch["capacity_wait"]["waits"] == 3
    (entry,) = read_report(s3)["capacity_waits"]
    assert (entry["outcome"], entry["ended_at"], entry["waits"]) == ("FOUND", NOW.isoformat(), 3)
    assert "g5.xlarge/subnet-a" not in launch["pools"]


def test_given_a_wait_whose_pools_refuse_again_then_their_back_off_doubles_and_the_waits_count_up(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = waiting_state(later(-60), 1800, waits=1, retry_after=60)
    expect_every_pool_full(stubber)

    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    assert launch["status"] == "WAITING" and launch["wait_seconds"] == 120  # 1 min, then 2 min
    assert launch["capacity_wait"]["waits"] == 2 and launch["capacity_wait"]["started_at"] == later(-60).isoformat()
    assert launch["capacity_wait_begins"] is False  # no second "waiting" email
    assert {record["failures"] for record in launch["pools"].values()} == {2}


def test_given_a_wait_whose_window_is_over_when_every_pool_refuses_then_exhausted_and_the_report_says_gave_up(
    aws, stubbed_ec2
):
    # Given a 30-minute window that began 30 minutes ago
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = waiting_state(later(-1800), 1800, waits=9, retry_after=300)
    expect_every_pool_full(stubber)

    # When every pool refuses once more
    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    # Then the job gives up (NoSpotCapacity follows) and the report says how long it waited
    assert launch["status"] == "EXHAUSTED" and launch["capacity_wait"]["outcome"] == "GAVE_UP"
    (entry,) = read_report(s3)["capacity_waits"]
    assert (entry["outcome"], entry["waits"], entry["ended_at"]) == ("GAVE_UP", 9, NOW.isoformat())


def test_given_an_interruption_after_a_wait_when_relaunching_then_the_next_attempt_waits_afresh(aws, stubbed_ec2):
    # Given attempt 1 found capacity after a wait whose window is now over, and was then reclaimed
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = waiting_state(later(-3600), 1800, waits=4, retry_after=0)
    state["launch"] |= {
        "status": "LAUNCHED",
        "pools": {},
        "instance": {"instance_id": "i-old", "instance_type": "g5.xlarge", "subnet_id": "subnet-a", "az": "us-east-1a"},
    }
    state["poll"] = {"status": "INTERRUPTED", "attempt": 1}
    expect_every_pool_full(stubber, IN_SPEC_ORDER[1:] + IN_SPEC_ORDER[:1])  # the reclaimed pool is asked last

    # When every pool refuses the relaunch
    launch = rsi.request_instance(ec2, s3, stub_settings(), state, now=NOW)

    # Then attempt 2 waits with a window of its own rather than failing the job
    assert launch["status"] == "WAITING" and launch["attempt"] == 2
    assert launch["capacity_wait"]["started_at"] == NOW.isoformat() and launch["capacity_wait"]["waits"] == 1


def test_given_two_interruptions_and_on_demand_after_two_then_the_third_attempt_launches_on_demand(aws, stubbed_ec2):
    # Given attempt 2 was interrupted, the job's policy: on-demand after 2 interruptions
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = job_state(on_demand_after={"interruptions": 2})
    state["launch"] = {
        "status": "LAUNCHED",
        "attempt": 2,
        "pools": {},
        "wait_seconds": 15,
        "instance": {
            "instance_id": "i-old",
            "instance_type": "g4dn.xlarge",
            "subnet_id": "subnet-b",
            "az": "us-east-1b",
        },
    }
    state["poll"] = {"status": "INTERRUPTED", "attempt": 2}
    expect_subnets(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a", spot=False)  # no spot request is even tried

    # When attempt 3 is requested
    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=True), state, now=NOW)

    # Then it runs on-demand, and says why (for the email)
    assert launch["attempt"] == 3 and launch["instance"]["lifecycle"] == "on-demand"
    assert launch["on_demand_reason"] == "2 spot interruption(s) reached on_demand_after.interruptions=2"


def test_given_a_wait_as_long_as_on_demand_after_allows_then_it_launches_on_demand_within_the_window(aws, stubbed_ec2):
    # Given 5 minutes of waiting so far in a 30-minute window, the job's policy: on-demand after 5 minutes
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = waiting_state(later(-300), 1800, waits=3, retry_after=300)
    state["job"]["on_demand_after"] = {"capacity_wait_minutes": 5}
    expect_every_pool_full(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a", spot=False)

    # When every spot pool refuses once more
    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=True), state, now=NOW)

    # Then it goes on-demand now rather than waiting out the window, and the wait ends FOUND
    assert launch["status"] == "LAUNCHED" and launch["instance"]["lifecycle"] == "on-demand"
    assert launch["on_demand_reason"] == (
        "waited 300s for spot capacity, reaching on_demand_after.capacity_wait_minutes=5"
    )
    assert launch["capacity_wait"]["outcome"] == "FOUND"


def test_given_no_spot_price_history_then_the_price_cap_is_the_estimate(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a")

    launch = rsi.request_instance(ec2, s3, stub_settings(max_spot_price=0.5), job_state())

    assert launch["instance"]["price_per_hour"] == 0.5


def test_given_a_price_cap_then_the_spot_request_carries_it_as_max_price():
    params = rsi.launch_parameters(
        make_settings(max_spot_price=0.45),
        job_state(),
        1,
        rsi.Pool("g5.xlarge", "subnet-a", "us-east-1a"),
        spot=True,
        region="us-east-1",
    )

    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
            "MaxPrice": "0.4500",
        },
    }
    kinds = {spec["ResourceType"] for spec in params["TagSpecifications"]}
    assert kinds == {"instance", "volume", "spot-instances-request"}


def test_given_an_interrupted_attempt_when_relaunching_then_the_next_attempt_is_tagged_and_rendered(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = job_state()
    state["launch"] = {
        "status": "LAUNCHED",
        "attempt": 2,
        "pools_failed": [],
        "wait_seconds": 15,
        "instance": {"instance_id": "i-old", "instance_type": "g5.xlarge", "subnet_id": "subnet-a", "az": "us-east-1a"},
    }
    state["bid"] = {"status": "FULFILLED", "code": "fulfilled", "message": "", "checks": 1}
    state["poll"] = {"status": "INTERRUPTED", "attempt": 2}
    expect_subnets(stubber)
    stubber.add_response(
        "run_instances",
        {"Instances": [{"InstanceId": "i-new", "LaunchTime": LAUNCH_TIME, "InstanceLifecycle": "spot"}]},
        run_params("g5.xlarge", "subnet-b")
        | {
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": ANY} for kind in ("instance", "volume", "spot-instances-request")
            ]
        },
    )

    launch = rsi.request_instance(ec2, s3, stub_settings(), state)

    assert launch["attempt"] == 3
    assert launch["pools_failed"] == []  # the reclaimed pool did not fail: it may have room again
    # but it is tried last for this attempt: the first choice type launches in the other subnet
    assert launch["demoted"] == "g5.xlarge/subnet-a" and launch["instance"]["subnet_id"] == "subnet-b"
    assert launch["instance"]["demoted_pool"] == "g5.xlarge/subnet-a"
    params = rsi.launch_parameters(
        stub_settings(), state, 3, rsi.Pool("g5.xlarge", "subnet-a", "us-east-1a"), spot=True, region="us-east-1"
    )
    assert {"Key": layout.TAG_ATTEMPT, "Value": "3"} in params["TagSpecifications"][0]["Tags"]
    assert "\nATTEMPT=3\n" in params["UserData"]


def test_given_an_unexpected_ec2_error_then_it_is_raised_and_no_further_pool_is_tried(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    stubber.add_client_error(
        "run_instances",
        service_error_code="InvalidParameterValue",
        service_message="bad template",
        expected_params=run_params("g5.xlarge", "subnet-a"),
    )

    with pytest.raises(ClientError, match="InvalidParameterValue"):
        rsi.request_instance(ec2, s3, stub_settings(), job_state())


def test_given_ec2_throttles_when_the_handler_runs_then_transient_error_lets_the_workflow_retry(
    aws, stubbed_ec2, monkeypatch
):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    stubber.add_client_error(
        "run_instances",
        service_error_code="RequestLimitExceeded",
        service_message="Request limit exceeded.",
        expected_params=run_params("g5.xlarge", "subnet-a"),
    )
    iam = boto3.client("iam", region_name="us-east-1")
    monkeypatch.setattr(runtime, "client", lambda service: {"ec2": ec2, "s3": s3, "iam": iam}[service])
    monkeypatch.setattr(runtime, "settings", stub_settings)

    with pytest.raises(TransientError, match="RequestLimitExceeded"):
        rsi.handler(job_state(), LAMBDA_CONTEXT)


def test_given_no_subnet_setting_and_no_default_vpc_then_the_error_names_the_setting_to_fix(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    stubber.add_response("describe_subnets", {"Subnets": []})

    with pytest.raises(rsi.NoSubnetToLaunchInto, match="SUBNET_IDS"):
        rsi.request_instance(ec2, s3, make_settings(), job_state())


def test_given_no_types_in_the_job_then_the_stack_defaults_are_tried_in_order(aws):
    ec2, _ = aws
    state = job_state(instance={"volume_gb": 100})

    pools = rsi.candidate_pools(ec2, make_settings(default_instance_types=("g6.xlarge", "g4dn.xlarge")), state["job"])

    assert [p.instance_type for p in pools[:1]] == ["g6.xlarge"]
    assert len(pools) == 2 * len({p.subnet_id for p in pools})
    assert [p.az for p in pools[: len(pools) // 2]] == sorted(p.az for p in pools[: len(pools) // 2])


def test_given_a_launch_then_the_new_instance_and_no_other_is_admitted_to_its_job_bucket(aws):
    # Given the job bucket's policy, which admits no instance before the first launch
    ec2, s3 = aws
    settings = make_settings(
        launch_template_id=launch_template(ec2),
        instance_role_arn="arn:aws:iam::123456789012:role/r",
        instance_role_id="AROAEXAMPLE",
    )

    # When the attempt launches
    launch = rsi.request_instance(ec2, s3, settings, job_state())

    # Then the bucket lets that instance's role session in, and only it
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert allowed_instances(policy) == [launch["instance"]["instance_id"]]
    deny = next(s for s in policy["Statement"] if s["Sid"] == "DenyInstancesOfOtherJobs")
    assert deny["Condition"]["StringNotLike"]["aws:userid"] == [f"AROAEXAMPLE:{launch['instance']['instance_id']}"]


def test_given_a_spend_cap_when_launched_then_budget_json_tells_this_instance_when_the_cap_runs_out(aws):
    # Given a job capped at $1 with nothing spent yet
    ec2, s3 = aws
    state = job_state()
    state["job"]["limits"]["max_cost_usd"] = 1

    # When its first instance launches
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), state)

    # Then its agent finds the cap's end: launch + $1 at the launch price (and the volume's)
    instance = launch["instance"]
    budget = json.loads(s3.get_object(Bucket=BUCKET, Key=layout.budget_key(1))["Body"].read())
    assert (budget["attempt"], budget["instance_id"], budget["execution"]) == (
        1,
        instance["instance_id"],
        state["execution"]["id"],
    )
    per_hour = instance["price_per_hour"] + (instance["volume_gb"] or 0) * 0.08 / 730
    expected = dt.datetime.fromisoformat(instance["launched_at"]) + dt.timedelta(hours=1 / per_hour)
    assert abs((dt.datetime.fromisoformat(budget["stop_at"]) - expected).total_seconds()) <= 1


def test_given_no_spend_cap_when_launched_then_no_budget_is_written(aws):
    ec2, s3 = aws
    rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=layout.budget_key(1))


def test_given_a_job_with_a_secrets_role_when_launched_then_only_the_new_instance_may_assume_it(aws):
    # Given a job whose CreateBucket made its secrets role, and an earlier attempt's instance admitted to it
    ec2, s3 = aws
    iam = boto3.client("iam", region_name="us-east-1")
    settings = make_settings(
        launch_template_id=launch_template(ec2),
        instance_role_arn="arn:aws:iam::123456789012:role/SpotTrainTest-InstanceRole",
        instance_role_id="AROA" + "EXAMPLEROLEID00001",
        secrets_boundary_arn="arn:aws:iam::123456789012:policy/SpotTrainTest-SecretsBoundary",
    )
    state = job_state(secrets={"HF_TOKEN": "/spottrain/hf-token"})
    role_arn = secrets_role.create_job_role(iam, settings, "us-east-1", state["job"], "run-1")
    secrets_role.admit_instance(iam, settings, role_arn, "i-0aaaaaaaaaaaaaaaa")
    state["storage"]["secrets_role"] = role_arn

    # When RequestSpotInstance launches
    launch = rsi.request_instance(ec2, s3, settings, state, iam=iam)

    # Then the role's trust names the new instance, and no longer the earlier one
    trust = iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(urllib.parse.unquote(trust)) if isinstance(trust, str) else trust
    assert secrets_role.admitted_instance(trust) == launch["instance"]["instance_id"] != "i-0aaaaaaaaaaaaaaaa"


def test_given_a_spend_cap_when_launched_then_the_workflow_itself_stops_waiting_soon_after_the_cap_runs_out(aws):
    # Given a job capped at $0.05 (minutes at the launch price) allowed to run 9000 minutes
    ec2, s3 = aws
    state = job_state()
    state["job"]["limits"].update(max_cost_usd=0.05, max_runtime_minutes=9000)

    # When its first instance launches
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), state)

    # Then the attempt's callback wait ends (and PollCompletion terminates a silent instance) at the budget's stop
    # plus the bootstrap margin, not at max runtime: only the agent reads budget.json, and code running as root on
    # the instance can stop the agent and keep heartbeating
    budget = json.loads(s3.get_object(Bucket=BUCKET, Key=layout.budget_key(1))["Body"].read())
    until_stop = (
        dt.datetime.fromisoformat(budget["stop_at"]) - dt.datetime.fromisoformat(launch["instance"]["launched_at"])
    ).total_seconds()
    assert launch["wait_timeout_seconds"] <= until_stop + limits.BOOTSTRAP_MARGIN_MINUTES * 60 + 1
    assert launch["wait_timeout_seconds"] < (9000 + 30) * 60
