"""Context values from cdk.json (JSON) and `-c` (strings) parse alike; bad ones name key, rule and fix."""
from __future__ import annotations

import pytest

from infra.app import default_context
from infra.config import ConfigError, StackConfig
from lambdas.shared.config import Settings


def _config(**overrides) -> StackConfig:
    context = {**default_context(), **overrides}
    return StackConfig.from_context(context.get)


def test_cdk_json_defaults_match_the_lambda_settings_defaults():
    # The stack's documented defaults are the ones the Lambdas fall back to (docs/ARCHITECTURE.md table).
    env = _config().lambda_environment()
    defaults = Settings(stack_name="s", bucket_prefix="p")
    assert env["ALLOWED_INSTANCE_TYPES"].split(",") == list(defaults.allowed_instance_types)
    assert env["DEFAULT_INSTANCE_TYPES"].split(",") == list(defaults.default_instance_types)
    for name, field in (("BID_WAIT_SECONDS", "bid_wait_seconds"),
                        ("HEARTBEAT_LOST_SECONDS", "heartbeat_lost_seconds"), ("MAX_ATTEMPTS", "max_attempts"),
                        ("MAX_RUNTIME_MINUTES", "max_runtime_minutes"),
                        ("MAX_KEEP_ALIVE_MINUTES", "max_keep_alive_minutes"), ("SECONDS_PER_MINUTE", "seconds_per_minute")):
        assert int(env[name]) == getattr(defaults, field), name
    assert env["MAX_SPOT_PRICE"] == "" and env["ON_DEMAND_FALLBACK"] == "true" and env["SUBNET_IDS"] == ""


def test_given_cli_strings_then_they_parse_like_json_values():
    from_strings = _config(allowedInstanceTypes="g5.xlarge, g6.xlarge", defaultInstanceTypes='["g6.xlarge"]',
                           heartbeatLostSeconds="120", bidMaxChecks="4", onDemandFallback="false", maxSpotPrice="0.5",
                           subnetIds="subnet-01,subnet-02", vpcId="vpc-01", jobTimeoutHours="0.5")
    from_json = _config(allowedInstanceTypes=["g5.xlarge", "g6.xlarge"], defaultInstanceTypes=["g6.xlarge"],
                        heartbeatLostSeconds=120, bidMaxChecks=4, onDemandFallback=False, maxSpotPrice=0.5,
                        subnetIds=["subnet-01", "subnet-02"], vpcId="vpc-01", jobTimeoutHours=0.5)
    assert from_strings == from_json
    assert from_strings.subnet_ids == ("subnet-01", "subnet-02") and from_strings.max_spot_price == 0.5


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
        ({"subnetIds": ["subnet-01"]}, "vpcId", "must be set when subnetIds"),
        ({"subnetIds": ["sn-1"], "vpcId": "vpc-01"}, "subnetIds", "not a subnet id"),
        ({"notificationEmail": "ops"}, "notificationEmail", "email address"),
        ({"jobTimeoutHours": 0}, "jobTimeoutHours", "> 0"),
        ({"defaultKeepAliveMinutes": 90}, "defaultKeepAliveMinutes", "<= maxKeepAliveMinutes"),
    ],
)
def test_given_bad_context_then_error_names_key_rule_and_fix(overrides, key, rule):
    with pytest.raises(ConfigError) as raised:
        _config(**overrides)
    message = str(raised.value)
    assert f"context {key}=" in message and rule in message and f"-c {key}=" in message
