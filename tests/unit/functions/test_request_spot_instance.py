"""request_spot_instance: one spot instance from the launch template, first pool with room, honest report."""
from __future__ import annotations

from spottrain.functions.shared import runtime

import base64
import json
import datetime as dt

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY

from spottrain.functions import request_spot_instance as rsi
from spottrain.functions.shared.bucket_policy import allowed_instances
from spottrain.contract import layout
from spottrain.contract.status import TransientError
from spot_fixtures import (  # noqa: F401 (aws, clients, stubbed_ec2: fixtures)
    BUCKET, EXEC_NAME, LAMBDA_CONTEXT, aws, clients, job_state, launch_template, make_settings, read_report,
    stubbed_ec2)

SUBNETS = [("subnet-a", "us-east-1a"), ("subnet-b", "us-east-1b")]
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
    instance = ec2.describe_instances(InstanceIds=[launch["instance"]["instance_id"]])["Reservations"][0]["Instances"][0]
    assert instance["InstanceType"] == "g5.xlarge"  # the job's first choice
    assert instance["InstanceLifecycle"] == "spot" and launch["instance"]["lifecycle"] == "spot"
    assert {
        layout.TAG_STACK: "SpotTrainTest", layout.TAG_JOB: EXEC_NAME,
        layout.TAG_EXECUTION: "run-1", layout.TAG_ATTEMPT: "1",
        "aws:ec2launchtemplate:id": settings.launch_template_id,
    }.items() <= tags_of(instance).items()
    assert instance["SubnetId"] == launch["instance"]["subnet_id"]


def test_given_a_launch_then_the_root_volume_is_encrypted_sized_and_tagged(aws):
    ec2, s3 = aws
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())

    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                            "Values": [launch["instance"]["instance_id"]]}])["Volumes"]
    assert [(v["Size"], v["Encrypted"]) for v in volumes] == [(120, True)]
    assert tags_of(volumes[0])[layout.TAG_JOB] == EXEC_NAME


def test_given_a_launch_then_user_data_carries_bucket_attempt_and_agent_but_no_secrets(aws):
    ec2, s3 = aws
    launch = rsi.request_instance(ec2, s3, make_settings(launch_template_id=launch_template(ec2)), job_state())

    encoded = ec2.describe_instance_attribute(InstanceId=launch["instance"]["instance_id"],
                                             Attribute="userData")["UserData"]["Value"]
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
    history = ec2.describe_spot_price_history(InstanceTypes=["g5.xlarge"], ProductDescriptions=["Linux/UNIX"],
                                              Filters=[{"Name": "availability-zone",
                                                        "Values": [launch["instance"]["az"]]}])["SpotPriceHistory"]
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
    instance = ec2.describe_instances(InstanceIds=[launch["instance"]["instance_id"]])["Reservations"][0]["Instances"][0]
    assert tags_of(instance)[layout.TAG_STACK] == "SpotTrainEnv"


# ----- per-pool answers moto cannot give: botocore Stubber ---------------------------------------

def expect_subnets(stubber):
    stubber.add_response("describe_subnets",
                         {"Subnets": [{"SubnetId": s, "AvailabilityZone": az} for s, az in SUBNETS]},
                         {"SubnetIds": [s for s, _ in SUBNETS]})


def run_params(instance_type: str, subnet: str, spot: bool = True) -> dict:
    params = {"LaunchTemplate": {"LaunchTemplateId": "lt-0123456789abcdef0", "Version": "$Latest"},
              "InstanceType": instance_type, "SubnetId": subnet, "MinCount": 1, "MaxCount": 1,
              "UserData": ANY, "TagSpecifications": ANY, "BlockDeviceMappings": ANY}
    if spot:
        params["InstanceMarketOptions"] = ANY
    return params


def expect_no_capacity(stubber, instance_type: str, subnet: str, code: str = "InsufficientInstanceCapacity",
                       spot: bool = True):
    # EC2 answers capacity shortages with HTTP 500: they must still count as "this pool failed".
    stubber.add_client_error("run_instances", service_error_code=code, service_message=f"no {instance_type}",
                             http_status_code=500 if code == "InsufficientInstanceCapacity" else 400,
                             expected_params=run_params(instance_type, subnet, spot))


def expect_launch(stubber, instance_type: str, subnet: str, spot: bool = True, price: str | None = "0.3120"):
    instance = {"InstanceId": "i-0abc", "LaunchTime": LAUNCH_TIME}
    if spot:
        instance |= {"InstanceLifecycle": "spot", "SpotInstanceRequestId": "sir-123"}
    stubber.add_response("run_instances", {"Instances": [instance]}, run_params(instance_type, subnet, spot))
    if spot:
        az = dict(SUBNETS)[subnet]
        history = [{"SpotPrice": price, "AvailabilityZone": az, "InstanceType": instance_type}] if price else []
        stubber.add_response("describe_spot_price_history", {"SpotPriceHistory": history})


def stub_settings(**overrides):
    return make_settings(subnet_ids=tuple(s for s, _ in SUBNETS), **overrides)


def test_given_no_capacity_in_the_first_pools_when_requested_then_the_next_pool_in_order_launches(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    expect_no_capacity(stubber, "g5.xlarge", "subnet-a")
    expect_no_capacity(stubber, "g5.xlarge", "subnet-b", code="SpotMaxPriceTooLow")
    expect_launch(stubber, "g4dn.xlarge", "subnet-a")

    launch = rsi.request_instance(ec2, s3, stub_settings(), job_state())

    assert launch["status"] == "LAUNCHED"
    assert launch["pools_failed"] == ["g5.xlarge/subnet-a", "g5.xlarge/subnet-b"]
    assert {"instance_type": "g4dn.xlarge", "subnet_id": "subnet-a", "az": "us-east-1a", "spot_request_id": "sir-123",
            "price_per_hour": 0.312, "on_demand_price_per_hour": 0.526,
            "launched_at": "2026-01-01T12:00:00+00:00"}.items() <= launch["instance"].items()


def test_given_pools_that_already_failed_this_job_when_relaunching_then_they_are_not_tried_again(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = job_state()
    state["launch"] = {"status": "LAUNCHED", "attempt": 1, "pools_failed": ["g5.xlarge/subnet-a"], "wait_seconds": 15,
                       "instance": {"instance_id": "i-old", "instance_type": "g5.xlarge", "subnet_id": "subnet-b",
                                    "az": "us-east-1b"}}
    state["bid"] = {"status": "FAILED", "code": "capacity-not-available", "message": "", "checks": 1}
    expect_subnets(stubber)
    expect_launch(stubber, "g4dn.xlarge", "subnet-a")  # g5 in a failed at launch, g5 in b failed its bid

    launch = rsi.request_instance(ec2, s3, stub_settings(), state)

    assert launch["attempt"] == 1  # a failed bid keeps the attempt
    assert launch["pools_failed"] == ["g5.xlarge/subnet-a", "g5.xlarge/subnet-b"]


def expect_every_pool_full(stubber) -> None:
    """Both of the job's types in both subnets answer InsufficientInstanceCapacity."""
    expect_subnets(stubber)
    for instance_type in ("g5.xlarge", "g4dn.xlarge"):
        for subnet, _ in SUBNETS:
            expect_no_capacity(stubber, instance_type, subnet)


def test_given_every_pool_without_capacity_and_no_fallback_then_exhausted_with_nothing_launched(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)

    launch = rsi.request_instance(ec2, s3, stub_settings(), job_state())

    assert launch["status"] == "EXHAUSTED" and launch["instance"] is None
    assert len(launch["pools_failed"]) == 4
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # no report of a launch that never was


def test_given_no_spot_capacity_and_job_and_stack_allow_on_demand_then_on_demand_in_the_first_pool(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a", spot=False)  # run_params(spot=False): no market options
    state = job_state(instance={"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": True, "volume_gb": 120})

    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=True), state)

    assert launch["status"] == "LAUNCHED"
    assert launch["instance"]["lifecycle"] == "on-demand" and launch["instance"]["spot_request_id"] is None
    assert launch["instance"]["price_per_hour"] == launch["instance"]["on_demand_price_per_hour"] == 1.006
    assert read_report(s3)["attempts"][0]["lifecycle"] == "on-demand"


def test_given_the_job_asks_for_on_demand_but_the_stack_forbids_it_then_exhausted(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_every_pool_full(stubber)
    state = job_state(instance={"types": ["g5.xlarge", "g4dn.xlarge"], "on_demand_fallback": True, "volume_gb": 120})

    launch = rsi.request_instance(ec2, s3, stub_settings(on_demand_fallback=False), state)

    assert launch["status"] == "EXHAUSTED"


def test_given_no_spot_price_history_then_the_price_cap_is_the_estimate(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    expect_launch(stubber, "g5.xlarge", "subnet-a", price=None)

    launch = rsi.request_instance(ec2, s3, stub_settings(max_spot_price=0.5), job_state())

    assert launch["instance"]["price_per_hour"] == 0.5


def test_given_a_price_cap_then_the_spot_request_carries_it_as_max_price():
    params = rsi.launch_parameters(make_settings(max_spot_price=0.45), job_state(), 1,
                                   rsi.Pool("g5.xlarge", "subnet-a", "us-east-1a"), spot=True, region="us-east-1")

    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.4500"},
    }
    kinds = {spec["ResourceType"] for spec in params["TagSpecifications"]}
    assert kinds == {"instance", "volume", "spot-instances-request"}


def test_given_an_interrupted_attempt_when_relaunching_then_the_next_attempt_is_tagged_and_rendered(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    state = job_state()
    state["launch"] = {"status": "LAUNCHED", "attempt": 2, "pools_failed": [], "wait_seconds": 15,
                       "instance": {"instance_id": "i-old", "instance_type": "g5.xlarge", "subnet_id": "subnet-a",
                                    "az": "us-east-1a"}}
    state["bid"] = {"status": "FULFILLED", "code": "fulfilled", "message": "", "checks": 1}
    state["poll"] = {"status": "INTERRUPTED", "attempt": 2}
    expect_subnets(stubber)
    stubber.add_response("run_instances", {"Instances": [{"InstanceId": "i-new", "LaunchTime": LAUNCH_TIME,
                                                          "InstanceLifecycle": "spot"}]},
                         run_params("g5.xlarge", "subnet-a") | {"TagSpecifications": [
                             {"ResourceType": kind, "Tags": ANY} for kind in ("instance", "volume", "spot-instances-request")
                         ]})
    stubber.add_response("describe_spot_price_history", {"SpotPriceHistory": []})

    launch = rsi.request_instance(ec2, s3, stub_settings(), state)

    assert launch["attempt"] == 3
    assert launch["pools_failed"] == []  # the reclaimed pool did not fail: it may have room again
    params = rsi.launch_parameters(stub_settings(), state, 3, rsi.Pool("g5.xlarge", "subnet-a", "us-east-1a"),
                                   spot=True, region="us-east-1")
    assert {"Key": layout.TAG_ATTEMPT, "Value": "3"} in params["TagSpecifications"][0]["Tags"]
    assert "\nATTEMPT=3\n" in params["UserData"]


def test_given_an_unexpected_ec2_error_then_it_is_raised_and_no_further_pool_is_tried(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    stubber.add_client_error("run_instances", service_error_code="InvalidParameterValue",
                             service_message="bad template", expected_params=run_params("g5.xlarge", "subnet-a"))

    with pytest.raises(ClientError, match="InvalidParameterValue"):
        rsi.request_instance(ec2, s3, stub_settings(), job_state())


def test_given_ec2_throttles_when_the_handler_runs_then_transient_error_lets_the_workflow_retry(
        aws, stubbed_ec2, monkeypatch):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    expect_subnets(stubber)
    stubber.add_client_error("run_instances", service_error_code="RequestLimitExceeded",
                             service_message="Request limit exceeded.", expected_params=run_params("g5.xlarge", "subnet-a"))
    monkeypatch.setattr(runtime, "client", lambda service: {"ec2": ec2, "s3": s3}[service])
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
    settings = make_settings(launch_template_id=launch_template(ec2), instance_role_arn="arn:aws:iam::123456789012:role/r",
                             instance_role_id="AROAEXAMPLE")

    # When the attempt launches
    launch = rsi.request_instance(ec2, s3, settings, job_state())

    # Then the bucket lets that instance's role session in, and only it
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert allowed_instances(policy) == [launch["instance"]["instance_id"]]
    deny = next(s for s in policy["Statement"] if s["Sid"] == "DenyInstancesOfOtherJobs")
    assert deny["Condition"]["StringNotLike"]["aws:userid"] == [f"AROAEXAMPLE:{launch['instance']['instance_id']}"]
