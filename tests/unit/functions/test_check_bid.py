"""check_bid: FULFILLED / PENDING (bounded) / FAILED with AWS's code, and FAILED leaves nothing open."""

from __future__ import annotations

from spottrain.functions.shared import runtime

import pytest

from spottrain.functions import check_bid as cb
from spottrain.functions.shared import report
from spottrain.contract.status import BidStatus
from spot_fixtures import (  # noqa: F401 (aws, clients, stubbed_ec2: fixtures)
    BUCKET,
    LAMBDA_CONTEXT,
    aws,
    clients,
    job_state,
    make_settings,
    read_report,
    stubbed_ec2,
    with_launch,
)

SPOT_STATE = with_launch(job_state(), "i-0abc", spot_request_id="sir-123")


def expect_request(stubber, state: str, code: str, message: str = "status message"):
    stubber.add_response(
        "describe_spot_instance_requests",
        {
            "SpotInstanceRequests": [
                {"SpotInstanceRequestId": "sir-123", "State": state, "Status": {"Code": code, "Message": message}}
            ]
        },
        {"SpotInstanceRequestIds": ["sir-123"]},
    )


def expect_instance(stubber, state: str, reason: str | None = None):
    instance = {"InstanceId": "i-0abc", "State": {"Name": state}}
    if reason:
        instance["StateReason"] = {"Code": reason, "Message": reason}
    stubber.add_response(
        "describe_instances", {"Reservations": [{"Instances": [instance]}]}, {"InstanceIds": ["i-0abc"]}
    )


def expect_withdrawal(stubber):
    stubber.add_response(
        "cancel_spot_instance_requests", {"CancelledSpotInstanceRequests": []}, {"SpotInstanceRequestIds": ["sir-123"]}
    )
    stubber.add_response("terminate_instances", {"TerminatingInstances": []}, {"InstanceIds": ["i-0abc"]})


def test_given_a_running_spot_instance_then_fulfilled_and_nothing_is_cancelled(aws, stubbed_ec2):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "active", "fulfilled")
    expect_instance(stubber, "running")

    bid = cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    assert bid["status"] == BidStatus.FULFILLED.value and bid["code"] == "fulfilled" and bid["checks"] == 1


@pytest.mark.parametrize("request_state, code", [("open", "pending-evaluation"), ("active", "fulfilled")])
def test_given_a_request_still_being_worked_on_then_pending_and_checks_count_up(aws, stubbed_ec2, request_state, code):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, request_state, code)
    expect_instance(stubber, "pending")
    state = SPOT_STATE | {"bid": {"status": "PENDING", "code": code, "message": "", "checks": 3}}

    bid = cb.check_bid(ec2, s3, make_settings(bid_max_checks=8), state)

    assert (bid["status"], bid["code"], bid["checks"]) == ("PENDING", code, 4)


@pytest.mark.parametrize("code", ["capacity-not-available", "price-too-low", "capacity-oversubscribed"])
def test_given_a_held_request_then_failed_with_aws_code_and_the_request_is_cancelled(aws, stubbed_ec2, code):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "open", code, message=f"AWS says {code}")
    expect_instance(stubber, "pending")
    expect_withdrawal(stubber)  # Stubber fails the test if cancel/terminate are not called with these ids

    bid = cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    assert (bid["status"], bid["code"]) == ("FAILED", code)
    assert "g5.xlarge in subnet-aaa" in bid["message"] and f"AWS says {code}" in bid["message"]


def test_given_pending_at_the_last_allowed_check_then_failed_as_fulfillment_timeout_and_withdrawn(aws, stubbed_ec2):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "open", "pending-evaluation")
    expect_instance(stubber, "pending")
    expect_withdrawal(stubber)
    state = SPOT_STATE | {"bid": {"status": "PENDING", "code": "pending-evaluation", "message": "", "checks": 7}}

    bid = cb.check_bid(ec2, s3, make_settings(bid_max_checks=8), state)

    assert (bid["status"], bid["code"], bid["checks"]) == ("FAILED", "fulfillment-timeout", 8)
    assert "BID_MAX_CHECKS=8" in bid["message"]


def test_given_the_previous_bid_belonged_to_an_earlier_launch_then_checks_start_again(aws, stubbed_ec2):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "open", "pending-evaluation")
    expect_instance(stubber, "pending")
    state = SPOT_STATE | {"bid": {"status": "FAILED", "code": "price-too-low", "message": "", "checks": 7}}

    bid = cb.check_bid(ec2, s3, make_settings(bid_max_checks=8), state)

    assert (bid["status"], bid["checks"]) == ("PENDING", 1)


def test_given_the_instance_was_terminated_for_capacity_then_failed_with_the_request_code(aws, stubbed_ec2):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "closed", "instance-terminated-no-capacity")
    expect_instance(stubber, "terminated", reason="Server.InsufficientInstanceCapacity")
    expect_withdrawal(stubber)

    bid = cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    assert (bid["status"], bid["code"]) == ("FAILED", "instance-terminated-no-capacity")


def test_given_the_instance_is_not_visible_yet_then_pending(aws, stubbed_ec2):
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "open", "pending-fulfillment")
    stubber.add_client_error(
        "describe_instances",
        service_error_code="InvalidInstanceID.NotFound",
        expected_params={"InstanceIds": ["i-0abc"]},
    )

    bid = cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    assert (bid["status"], bid["code"]) == ("PENDING", "pending-fulfillment")


# ----- against moto: instances with no spot request of their own (on-demand, or moto's spot) --------


def run_instance(ec2) -> str:
    return ec2.run_instances(ImageId="ami-12c6146b", InstanceType="g5.xlarge", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]


def test_given_a_running_on_demand_instance_then_fulfilled(aws):
    ec2, s3 = aws
    state = with_launch(job_state(), run_instance(ec2), lifecycle="on-demand")

    assert cb.check_bid(ec2, s3, make_settings(), state)["status"] == "FULFILLED"


def test_given_the_launched_instance_already_ran_and_was_shut_down_then_fulfilled_for_poll_completion_to_classify(aws):
    ec2, s3 = aws
    instance_id = run_instance(ec2)
    ec2.terminate_instances(InstanceIds=[instance_id])

    bid = cb.check_bid(ec2, s3, make_settings(), with_launch(job_state(), instance_id))

    assert (bid["status"], bid["code"]) == ("FULFILLED", "Client.UserInitiatedShutdown")


def test_given_the_spot_instance_shut_itself_down_within_seconds_then_fulfilled_and_its_pool_not_blamed(
    aws, stubbed_ec2
):
    # Given a spot instance whose bootstrap failed at once: it ran, shut itself down, and closed its request
    ec2, stubber = stubbed_ec2
    _, s3 = aws
    expect_request(stubber, "closed", "instance-terminated-by-user")
    expect_instance(stubber, "terminated", reason="Client.InstanceInitiatedShutdown")

    # When the bid is checked (the stubber fails on any cancel or terminate call)
    bid = cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    # Then the launch counts as fulfilled: no other pool is tried for a failure that is not about capacity
    assert (bid["status"], bid["code"]) == ("FULFILLED", "Client.InstanceInitiatedShutdown")


def test_given_the_handler_when_invoked_with_the_whole_state_then_it_returns_the_bid(aws, monkeypatch):
    ec2, s3 = aws
    monkeypatch.setenv("STACK_NAME", "SpotTrainTest")
    monkeypatch.setenv("BUCKET_PREFIX", "spottrain-123456789012")
    monkeypatch.setenv("BID_MAX_CHECKS", "2")
    runtime.settings.cache_clear()
    try:
        bid = cb.handler(with_launch(job_state(), run_instance(ec2)), LAMBDA_CONTEXT)
    finally:
        runtime.settings.cache_clear()
    assert set(bid) == {"status", "code", "message", "checks"} and bid["status"] == "FULFILLED"


def test_given_a_failed_bid_then_its_attempt_stops_counting_billable_time_in_the_report(aws, stubbed_ec2):
    _, s3 = aws
    ec2, stubber = stubbed_ec2
    report.record_launch(s3, BUCKET, "pix2pix-facades", 1, SPOT_STATE["launch"]["instance"])
    expect_request(stubber, "open", "capacity-not-available")
    expect_instance(stubber, "pending")
    expect_withdrawal(stubber)

    cb.check_bid(ec2, s3, make_settings(), SPOT_STATE)

    entry = read_report(s3)["attempts"][0]
    assert entry["outcome"] == "BID_FAILED" and entry["ended_at"] is not None
