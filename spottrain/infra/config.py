"""The stack's configuration, read from CDK context (spottrain/contract/defaults.py, cdk.json, `-c key=value`, or build_app).

Values from `cdk.json` or build_app arrive as JSON; values from `-c` arrive as strings. Both parse to
the same `StackConfig`, and a bad value fails synthesis naming the key, the rule and the fix, rather
than deploying a stack whose Lambdas reject their own environment at the first job.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable

from spottrain.contract.names import LINUX_USER_NAME

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# It starts every job bucket name, and `-<exec_name>` must still fit S3's 63 characters.
_BUCKET_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SSM_NAME = re.compile(r"^/\S+$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]+$")


class ConfigError(ValueError):
    """A context value breaks its rule; the message names the key, the rule and the fix."""


_USER_RULE = ("must be the AMI's default Linux user, e.g. ubuntu (Deep Learning AMIs on Ubuntu) or ec2-user "
              "(Amazon Linux): lowercase letters, digits, '_' and '-'")


def _error(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"context {key}={value!r}: {rule}. Fix it in cdk.json or pass -c {key}=<value>.")


class _Context:
    """Typed reads of context values that may be JSON values or `-c` strings."""

    def __init__(self, get: Callable[[str], Any]) -> None:
        self._get = get

    def text(self, key: str, pattern: re.Pattern | None = None, rule: str = "") -> str:
        value = self._get(key)
        text = "" if value is None else str(value).strip()
        if text and pattern and not pattern.match(text):
            raise _error(key, value, rule)
        return text

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def items(self, key: str, pattern: re.Pattern | None = None, rule: str = "") -> tuple[str, ...]:
        value = self._get(key)
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            # `-c subnetIds='["subnet-1"]'` and `-c subnetIds=subnet-1,subnet-2` both mean a list
            stripped = value.strip()
            value = json.loads(stripped) if stripped.startswith("[") else stripped.split(",")
        if not isinstance(value, (list, tuple)):
            raise _error(key, value, "must be a list or a comma-separated string")
        items = tuple(str(item).strip() for item in value if str(item).strip())
        for item in items:
            if pattern and not pattern.match(item):
                raise _error(key, value, f"{item!r} {rule}")
        return items

    def number(self, key: str, minimum: float = 0, above: bool = False, whole: bool = False) -> Any:
        value = self._get(key)
        rule = f"must be a {'whole ' if whole else ''}number {'>' if above else '>='} {minimum}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _error(key, value, rule) from None
        if number < minimum or (above and number == minimum) or (whole and not number.is_integer()):
            raise _error(key, value, rule)
        return int(number) if whole else number

    def whole(self, key: str, minimum: int = 0) -> int:
        return self.number(key, minimum, whole=True)

    def optional_price(self, key: str) -> float | None:
        return self.number(key, 0, above=True) if self.text(key) else None

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if isinstance(value, bool):
            return value
        if self.text(key).lower() not in ("true", "false"):
            raise _error(key, value, "must be true or false")
        return self.text(key).lower() == "true"


@dataclasses.dataclass(frozen=True)
class StackConfig:
    notification_email: str
    allowed_instance_types: tuple[str, ...]
    default_instance_types: tuple[str, ...]
    ami_ssm_parameter: str
    instance_user: str  # the AMI's default user: the job's commands run as it, in its home, as in 2017
    vpc_id: str
    subnet_ids: tuple[str, ...]
    bucket_prefix: str  # "" = spottrain-<account>
    max_spot_price: float | None
    max_cost_usd: float | None  # a job's spend cap at most, and by default (limits.max_cost_usd)
    root_volume_gb: int
    bid_wait_seconds: int
    bid_max_checks: int
    heartbeat_lost_seconds: int  # the callback wait's HeartbeatSeconds
    max_runtime_minutes: int
    max_attempts: int
    default_keep_alive_minutes: int
    max_keep_alive_minutes: int
    on_demand_fallback: bool
    capacity_wait_minutes: int
    max_capacity_wait_minutes: int
    seconds_per_minute: int
    job_timeout_hours: float
    log_retention_days: int
    max_sweep_variants: int
    max_sweep_parallel: int
    powertools_layer_arn: str | None  # None = the pinned public layer, "" = no layer

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "StackConfig":
        """`get` is node.try_get_context; every key has its default in spottrain/contract/defaults.py."""
        ctx = _Context(get)
        instance_type_rule = "is not an EC2 instance type (family.size, e.g. g5.xlarge)"
        config = cls(
            notification_email=ctx.text("notificationEmail", _EMAIL, "must be an email address"),
            allowed_instance_types=ctx.items("allowedInstanceTypes", _INSTANCE_TYPE, instance_type_rule),
            default_instance_types=ctx.items("defaultInstanceTypes", _INSTANCE_TYPE, instance_type_rule),
            ami_ssm_parameter=ctx.text("amiSsmParameter", _SSM_NAME, "must be an SSM parameter name starting with /"),
            instance_user=ctx.text("instanceUser", LINUX_USER_NAME, _USER_RULE),
            vpc_id=ctx.text("vpcId", _VPC_ID, "must be a VPC id like vpc-0abc123, or empty for the default VPC"),
            subnet_ids=ctx.items("subnetIds", _SUBNET_ID, "is not a subnet id like subnet-0abc123"),
            bucket_prefix=ctx.text(
                "bucketPrefix", _BUCKET_PREFIX, "must be 3-40 lowercase letters, digits or hyphens (job bucket names)"
            ),
            max_spot_price=ctx.optional_price("maxSpotPrice"),
            max_cost_usd=ctx.optional_price("maxCostUsd"),
            root_volume_gb=ctx.whole("rootVolumeGb", minimum=8),
            bid_wait_seconds=ctx.whole("bidWaitSeconds"),
            bid_max_checks=ctx.whole("bidMaxChecks", minimum=1),
            heartbeat_lost_seconds=ctx.whole("heartbeatLostSeconds", minimum=1),
            max_runtime_minutes=ctx.whole("maxRuntimeMinutes", minimum=1),
            max_attempts=ctx.whole("maxAttempts", minimum=1),
            default_keep_alive_minutes=ctx.whole("defaultKeepAliveMinutes"),
            max_keep_alive_minutes=ctx.whole("maxKeepAliveMinutes"),
            on_demand_fallback=ctx.flag("onDemandFallback"),
            capacity_wait_minutes=ctx.whole("capacityWaitMinutes"),
            max_capacity_wait_minutes=ctx.whole("maxCapacityWaitMinutes"),
            seconds_per_minute=ctx.whole("secondsPerMinute", minimum=1),
            job_timeout_hours=ctx.number("jobTimeoutHours", above=True),
            log_retention_days=ctx.whole("logRetentionDays", minimum=1),
            max_sweep_variants=ctx.whole("maxSweepVariants", minimum=1),
            max_sweep_parallel=ctx.whole("maxSweepParallel", minimum=1),
            powertools_layer_arn=ctx.optional_text("powertoolsLayerArn"),
        )
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        if not self.allowed_instance_types:
            raise _error("allowedInstanceTypes", [], "must name at least one EC2 instance type, e.g. g5.xlarge")
        if not self.instance_user:
            raise _error("instanceUser", "", _USER_RULE)
        if not self.default_instance_types:
            raise _error("defaultInstanceTypes", [], "must name at least one EC2 instance type, e.g. g5.xlarge")
        outside = [name for name in self.default_instance_types if name not in self.allowed_instance_types]
        if outside:
            defaults = list(self.default_instance_types)
            raise _error("defaultInstanceTypes", defaults, f"{outside} not in allowedInstanceTypes")
        if self.subnet_ids and not self.vpc_id:
            rule = "must be set when subnetIds is set (the security group lives in that VPC)"
            raise _error("vpcId", self.vpc_id, rule)
        if self.default_keep_alive_minutes > self.max_keep_alive_minutes:
            limit = f"must be <= maxKeepAliveMinutes ({self.max_keep_alive_minutes})"
            raise _error("defaultKeepAliveMinutes", self.default_keep_alive_minutes, limit)
        if self.capacity_wait_minutes > self.max_capacity_wait_minutes:
            limit = f"must be <= maxCapacityWaitMinutes ({self.max_capacity_wait_minutes})"
            raise _error("capacityWaitMinutes", self.capacity_wait_minutes, limit)

    def lambda_environment(self) -> dict[str, str]:
        """The settings part of the Lambda environment (names and parsing: spottrain/contract/settings.py)."""
        return {
            "SUBNET_IDS": ",".join(self.subnet_ids),
            "INSTANCE_USER": self.instance_user,
            "ALLOWED_INSTANCE_TYPES": ",".join(self.allowed_instance_types),
            "DEFAULT_INSTANCE_TYPES": ",".join(self.default_instance_types),
            "MAX_SPOT_PRICE": "" if self.max_spot_price is None else f"{self.max_spot_price:g}",
            "MAX_COST_USD": "" if self.max_cost_usd is None else f"{self.max_cost_usd:g}",
            "BID_WAIT_SECONDS": str(self.bid_wait_seconds),
            "BID_MAX_CHECKS": str(self.bid_max_checks),
            "HEARTBEAT_LOST_SECONDS": str(self.heartbeat_lost_seconds),
            "MAX_RUNTIME_MINUTES": str(self.max_runtime_minutes),
            "MAX_ATTEMPTS": str(self.max_attempts),
            "DEFAULT_KEEP_ALIVE_MINUTES": str(self.default_keep_alive_minutes),
            "MAX_KEEP_ALIVE_MINUTES": str(self.max_keep_alive_minutes),
            "ON_DEMAND_FALLBACK": "true" if self.on_demand_fallback else "false",
            "CAPACITY_WAIT_MINUTES": str(self.capacity_wait_minutes),
            "MAX_CAPACITY_WAIT_MINUTES": str(self.max_capacity_wait_minutes),
            "SECONDS_PER_MINUTE": str(self.seconds_per_minute),
            "MAX_SWEEP_VARIANTS": str(self.max_sweep_variants),
            "MAX_SWEEP_PARALLEL": str(self.max_sweep_parallel),
        }
