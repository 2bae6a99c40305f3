"""IMDSv2 client: token handshake, spot notice, and a missing IMDS that must not hurt."""

from __future__ import annotations

import time

from agent_support import free_port
from spottrain.agent.imds import UNKNOWN_INSTANCE, Imds


def test_given_imdsv2_when_asking_then_the_instance_id_comes_back_with_a_token(imds):
    assert Imds(imds.endpoint).instance_id() == "i-0123456789abcdef0"


def test_given_no_notice_then_none_and_given_a_notice_then_action_and_time(imds):
    client = Imds(imds.endpoint)
    assert client.spot_notice() is None

    imds.reclaim(seconds_left=120)

    notice = client.spot_notice()
    assert notice["action"] == "terminate" and notice["time"].endswith("Z")


def test_given_an_expired_token_when_polling_then_a_new_token_is_fetched(imds):
    client = Imds(imds.endpoint)
    client.instance_id()
    imds.token = "rotated"

    assert client.instance_id() == "i-0123456789abcdef0"


def test_given_an_imds_too_slow_for_the_first_tries_when_asking_then_the_instance_id_still_comes_back(imds):
    # Given an IMDS that leaves the first two requests unanswered (a loaded machine's)
    imds.stalls = 2

    # When the agent asks for its id, then it gets it: the id everything the workflow sends it is addressed to
    assert Imds(imds.endpoint, timeout=0.2).instance_id() == "i-0123456789abcdef0"
    assert imds.stalls == 0


def test_given_no_imds_when_asking_then_unknown_and_no_notice_quickly():
    client = Imds(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    started = time.monotonic()

    assert client.instance_id() == UNKNOWN_INSTANCE and client.spot_notice() is None
    assert time.monotonic() - started < 2


def test_given_the_sdk_variable_then_the_endpoint_follows_it():
    assert (
        Imds.from_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338/"}).endpoint
        == "http://127.0.0.1:1338"
    )
    assert Imds.from_env({}).endpoint == "http://169.254.169.254"
