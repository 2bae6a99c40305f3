"""Context values (JSON from the defaults, cdk.json or build_app; strings from `-c`) parse alike; bad ones name key, rule and fix."""

from __future__ import annotations

import pytest

from spottrain.infra.app import default_context
from spottrain.infra.config import ConfigError, StackConfig
from spottrain.contract.settings import ENVIRONMENT_VARIABLES, Settings, settings_from_env


def _config(**overrides) -> StackConfig:
    context = {**default_context(), **overrides}
    return StackConfig.from_context(context.get)


def test_the_stack_defaults_reach_the_lambdas_as_their_own_settings_defaults():
    # One copy of each default (spottrain/contract/defaults.py): the environment the stack derives from
    # it parses to exactly the defaults a function falls back to, and that the CLI checks specs against.
    env = _config().lambda_environment()

    assert settings_from_env({"STACK_NAME": "s", "BUCKET_PREFIX": "p", **env}) == Settings(
        stack_name="s", bucket_prefix="p"
    )
    assert set(env) | {
        "STACK_NAME",
        "BUCKET_PREFIX",
        "RECORDS_BUCKET",
        "TOPIC_ARN",
        "LAUNCH_TEMPLATE_ID",
        "AGENT_BUCKET",
        "AGENT_KEY",
        "INSTANCE_ROLE_ARN",
        "INSTANCE_ROLE_ID",
        "SECRETS_BOUNDARY_ARN",
    } == set(ENVIRONMENT_VARIABLES)


def test_given_cli_strings_then_they_parse_like_json_values():
    from_strings = _config(
        allowedInstanceTypes="g5.xlarge, g6.xlarge",
        defaultInstanceTypes='["g6.xlarge"]',
        heartbeatLostSeconds="120",
        bidMaxChecks="4",
        onDemandFallback="false",
        maxSpotPrice="0.5",
        subnetIds="subnet-01,subnet-02",
        vpcId="vpc-01",
        jobTimeoutHours="0.5",
    )
    from_json = _config(
        allowedInstanceTypes=["g5.xlarge", "g6.xlarge"],
        defaultInstanceTypes=["g6.xlarge"],
        heartbeatLostSeconds=120,
        bidMaxChecks=4,
        onDemandFallback=False,
        maxSpotPrice=0.5,
        subnetIds=["subnet-01", "subnet-02"],
        vpcId="vpc-01",
        jobTimeoutHours=0.5,
    )
    assert from_strings == from_json
    assert from_strings.subnet_ids == ("subnet-01", "subnet-02") and from_strings.max_spot_price == 0.5


def test_given_a_stack_spend_cap_then_the_lambdas_get_it_and_none_by_default():
    assert _config().max_cost_usd is None and _config().lambda_environment()["MAX_COST_USD"] == ""
    env = _config(maxCostUsd="25").lambda_environment()
    assert settings_from_env({"STACK_NAME": "s", "BUCKET_PREFIX": "p", **env}).max_cost_usd == 25.0


def test_powertools_layer_absent_means_default_and_empty_means_none():
    assert _config().powertools_layer_arn is None
    assert _config(powertoolsLayerArn="").powertools_layer_arn == ""


@pytest.mark.parametrize(
    ("overrides", "key", "rule"),
    [
        ({"defaultInstanceTypes": ["p5.48xlarge"]}, "defaultInstanceTypes", "not in allowedInstanceTypes"),
        ({"allowedInstanceTypes": "g5 xlarge"}, "allowedInstanceTypes", "not an EC2 instance type"),
        ({"allowedInstanceTypes": []}, "allowedInstanceTypes", "at least one"),
        ({"bucketPrefix": "Spot_Train"}, "bucketPrefix", "lowercase"),
        ({"heartbeatLostSeconds": 0}, "heartbeatLostSeconds", ">= 1"),
        ({"bidWaitSeconds": "soon"}, "bidWaitSeconds", "must be a whole number"),
        ({"rootVolumeGb": 99.5}, "rootVolumeGb", "must be a whole number >= 8"),
        ({"maxAttempts": 0}, "maxAttempts", ">= 1"),
        ({"onDemandFallback": "maybe"}, "onDemandFallback", "true or false"),
        ({"maxSpotPrice": "-1"}, "maxSpotPrice", "> 0"),
        ({"maxCostUsd": "0"}, "maxCostUsd", "> 0"),
        ({"subnetIds": ["subnet-01"]}, "vpcId", "must be set when subnetIds"),
        ({"subnetIds": ["sn-1"], "vpcId": "vpc-01"}, "subnetIds", "not a subnet id"),
        ({"notificationEmail": "ops"}, "notificationEmail", "email address"),
        ({"jobTimeoutHours": 0}, "jobTimeoutHours", "> 0"),
        ({"defaultKeepAliveMinutes": 90}, "defaultKeepAliveMinutes", "<= maxKeepAliveMinutes"),
        ({"capacityWaitMinutes": 300}, "capacityWaitMinutes", "<= maxCapacityWaitMinutes"),
    ],
)
def test_given_bad_context_then_error_names_key_rule_and_fix(overrides, key, rule):
    with pytest.raises(ConfigError) as raised:
        _config(**overrides)
    message = str(raised.value)
    assert f"context {key}=" in message and rule in message and f"-c {key}=" in message


def test_given_several_bad_keys_then_one_error_names_each_with_its_rule():
    # Given three bad values at once, When synthesizing, Then one error lists all three (not the first only)
    with pytest.raises(ConfigError) as raised:
        _config(maxAttempts=0, bucketPrefix="Spot_Train", subnetIds="subnet-01,sn-2", vpcId="vpc-01")
    lines = str(raised.value).splitlines()
    assert lines == [
        "context subnetIds='subnet-01,sn-2': 'sn-2' is not a subnet id like subnet-0abc123. "
        "Fix it in cdk.json or pass -c subnetIds=<value>.",
        "context bucketPrefix='Spot_Train': must be 3-40 lowercase letters, digits or hyphens (job bucket names). "
        "Fix it in cdk.json or pass -c bucketPrefix=<value>.",
        "context maxAttempts=0: must be a whole number >= 1. Fix it in cdk.json or pass -c maxAttempts=<value>.",
    ]


def test_the_stack_never_sets_the_emulators_minute_and_a_minute_is_60_seconds_without_it():
    # Given only what the stack sets, Then a minute is 60 s; the emulator's knob is no stack variable
    env = {"STACK_NAME": "s", "BUCKET_PREFIX": "p", **_config().lambda_environment()}
    assert "SPOTTRAIN_SECONDS_PER_MINUTE" not in env and "secondsPerMinute" not in default_context()
    assert settings_from_env(env).seconds_per_minute == 60
    assert settings_from_env({**env, "SPOTTRAIN_SECONDS_PER_MINUTE": "1"}).seconds_per_minute == 1
