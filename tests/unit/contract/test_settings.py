"""The Lambdas' settings parse from their environment (pydantic); one error names every bad variable."""

from __future__ import annotations

import pytest

from spottrain.contract.settings import EnvironmentConfigError, Settings, settings_from_env

BASE = {"STACK_NAME": "SpotTrain", "BUCKET_PREFIX": "spottrain-123456789012"}


@pytest.mark.parametrize(
    "name",
    ["BID_MAX_CHECKS", "HEARTBEAT_LOST_SECONDS", "MAX_RUNTIME_MINUTES", "MAX_ATTEMPTS", "SPOTTRAIN_SECONDS_PER_MINUTE"],
)
def test_given_zero_for_a_count_that_must_be_positive_then_refused_naming_it(name):
    # Given 0 attempts, checks or minutes (a job that could never run, a heartbeat that is always lost)
    with pytest.raises(EnvironmentConfigError) as caught:
        settings_from_env({**BASE, name: "0"})
    # Then the variable, its value and the rule are named
    assert f"{name}='0' is invalid: Input should be greater than 0" in str(caught.value)


@pytest.mark.parametrize(
    "name, field",
    [
        ("BID_WAIT_SECONDS", "bid_wait_seconds"),
        ("DEFAULT_KEEP_ALIVE_MINUTES", "default_keep_alive_minutes"),
        ("MAX_KEEP_ALIVE_MINUTES", "max_keep_alive_minutes"),
    ],
)
def test_given_zero_where_zero_means_none_then_accepted(name, field):
    assert getattr(settings_from_env({**BASE, name: "0"}), field) == 0


def test_given_strings_of_the_environment_then_typed_values():
    settings = settings_from_env(
        {
            **BASE,
            "SUBNET_IDS": "subnet-1, subnet-2,",
            "ON_DEMAND_FALLBACK": "true",
            "MAX_SPOT_PRICE": "",
            "MAX_ATTEMPTS": "5",
            "UNRELATED": "x",
        }
    )
    assert settings.subnet_ids == ("subnet-1", "subnet-2") and settings.on_demand_fallback is True
    assert settings.max_spot_price is None and settings.max_attempts == 5
    assert settings == Settings(
        stack_name="SpotTrain",
        bucket_prefix="spottrain-123456789012",
        subnet_ids=("subnet-1", "subnet-2"),
        on_demand_fallback=True,
        max_attempts=5,
    )


def test_given_missing_blank_and_malformed_variables_then_one_error_names_each():
    with pytest.raises(EnvironmentConfigError) as caught:
        settings_from_env({"STACK_NAME": " ", "MAX_SPOT_PRICE": "-1", "ON_DEMAND_FALLBACK": "maybe"})
    message = str(caught.value)
    assert message.startswith("Lambda environment is misconfigured: ")
    for part in (
        "STACK_NAME is not set",
        "BUCKET_PREFIX is not set",
        "MAX_SPOT_PRICE='-1' is invalid",
        "ON_DEMAND_FALLBACK='maybe' is invalid",
    ):
        assert part in message
