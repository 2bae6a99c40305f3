"""The stack's configuration, read from CDK context (cdk.json defaults, `-c key=value`, or build_app).

Values from `cdk.json` or build_app arrive as JSON; values from `-c` arrive as strings. Both parse to
the same `StackConfig`, and a bad value fails synthesis naming the key, the rule and the fix, rather
than deploying a stack whose Lambdas reject their own environment at the first job.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable

_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_BUCKET_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]+$")


class ConfigError(ValueError):
    """A context value is missing its rule; the message names key, rule and fix."""


def _fail(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"context {key}={value!r}: {rule}. Fix it in cdk.json or pass -c {key}=<value>.")


def _text(key: str, value: Any) -> str:
    return "" if value is None else str(value).strip()


def _list(key: str, value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        # `-c subnetIds='["subnet-1"]'` and `-c subnetIds=subnet-1,subnet-2` both mean a list
        items = json.loads(stripped) if stripped.startswith("[") else stripped.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise _fail(key, value, "must be a list or a comma-separated string")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _number(key: str, value: Any, cast: Callable[[Any], float], minimum: float, strict: bool = False) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise _fail(key, value, f"must be a number{' > ' if strict else ' >= '}{minimum}") from None
    if number < minimum or (strict and number == minimum):
        raise _fail(key, value, f"must be {'>' if strict else '>='} {minimum}")
    return number


def _int(key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise _fail(key, value, "must be a whole number")
    return _number(key, value, lambda v: int(float(v)), minimum)


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = _text(key, value).lower()
    if lowered not in ("true", "false"):
        raise _fail(key, value, "must be true or false")
    return lowered == "true"


def _optional_price(key: str, value: Any) -> float | None:
    if value is None or _text(key, value) == "":
        return None
    return _number(key, value, float, 0, strict=True)


def _matching(key: str, value: Any, pattern: re.Pattern, rule: str) -> str:
    text = _text(key, value)
    if text and not pattern.match(text):
        raise _fail(key, value, rule)
    return text


def _instance_types(key: str, value: Any) -> tuple[str, ...]:
    types = _list(key, value)
    if not types:
        raise _fail(key, value, "must name at least one EC2 instance type, e.g. g5.xlarge")
    for name in types:
        if not _INSTANCE_TYPE.match(name):
            raise _fail(key, value, f"{name!r} is not an EC2 instance type (family.size, e.g. g5.xlarge)")
    return types


@dataclasses.dataclass(frozen=True)
class StackConfig:
    notification_email: str
    allowed_instance_types: tuple[str, ...]
    default_instance_types: tuple[str, ...]
    ami_ssm_parameter: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    bucket_prefix: str  # "" = spottrain-<account>
    max_spot_price: float | None
    root_volume_gb: int
    bid_wait_seconds: int
    bid_max_checks: int
    poll_min_seconds: int
    poll_max_seconds: int
    poll_backoff: float
    heartbeat_stale_seconds: int
    heartbeat_lost_seconds: int
    polls_per_execution: int
    max_runtime_minutes: int
    max_attempts: int
    default_keep_alive_minutes: int
    max_keep_alive_minutes: int
    on_demand_fallback: bool
    seconds_per_minute: int
    job_timeout_hours: float
    log_retention_days: int
    powertools_layer_arn: str | None  # None = the pinned public layer, "" = no layer

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "StackConfig":
        """`get` is node.try_get_context: every key has its default in cdk.json."""
        config = cls(
            notification_email=_matching("notificationEmail", get("notificationEmail"), _EMAIL, "must be an email address"),
            allowed_instance_types=_instance_types("allowedInstanceTypes", get("allowedInstanceTypes")),
            default_instance_types=_instance_types("defaultInstanceTypes", get("defaultInstanceTypes")),
            ami_ssm_parameter=_matching(
                "amiSsmParameter", get("amiSsmParameter"), re.compile(r"^/\S+$"), "must be an SSM parameter name starting with /"
            ),
            vpc_id=_matching("vpcId", get("vpcId"), _VPC_ID, "must be a VPC id like vpc-0abc123, or empty for the default VPC"),
            subnet_ids=_list("subnetIds", get("subnetIds")),
            bucket_prefix=_matching(
                "bucketPrefix",
                get("bucketPrefix"),
                _BUCKET_PREFIX,
                "must be 3-40 lowercase letters, digits or hyphens (it starts every job's S3 bucket name)",
            ),
            max_spot_price=_optional_price("maxSpotPrice", get("maxSpotPrice")),
            root_volume_gb=_int("rootVolumeGb", get("rootVolumeGb"), minimum=8),
            bid_wait_seconds=_int("bidWaitSeconds", get("bidWaitSeconds")),
            bid_max_checks=_int("bidMaxChecks", get("bidMaxChecks"), minimum=1),
            poll_min_seconds=_int("pollMinSeconds", get("pollMinSeconds")),
            poll_max_seconds=_int("pollMaxSeconds", get("pollMaxSeconds")),
            poll_backoff=_number("pollBackoff", get("pollBackoff"), float, 1),
            heartbeat_stale_seconds=_int("heartbeatStaleSeconds", get("heartbeatStaleSeconds")),
            heartbeat_lost_seconds=_int("heartbeatLostSeconds", get("heartbeatLostSeconds")),
            polls_per_execution=_int("pollsPerExecution", get("pollsPerExecution"), minimum=1),
            max_runtime_minutes=_int("maxRuntimeMinutes", get("maxRuntimeMinutes"), minimum=1),
            max_attempts=_int("maxAttempts", get("maxAttempts"), minimum=1),
            default_keep_alive_minutes=_int("defaultKeepAliveMinutes", get("defaultKeepAliveMinutes")),
            max_keep_alive_minutes=_int("maxKeepAliveMinutes", get("maxKeepAliveMinutes")),
            on_demand_fallback=_bool("onDemandFallback", get("onDemandFallback")),
            seconds_per_minute=_int("secondsPerMinute", get("secondsPerMinute"), minimum=1),
            job_timeout_hours=_number("jobTimeoutHours", get("jobTimeoutHours"), float, 0, strict=True),
            log_retention_days=_int("logRetentionDays", get("logRetentionDays"), minimum=1),
            powertools_layer_arn=None if get("powertoolsLayerArn") is None else _text("powertoolsLayerArn", get("powertoolsLayerArn")),
        )
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        for subnet in self.subnet_ids:
            if not _SUBNET_ID.match(subnet):
                raise _fail("subnetIds", list(self.subnet_ids), f"{subnet!r} is not a subnet id like subnet-0abc123")
        if self.subnet_ids and not self.vpc_id:
            raise _fail("vpcId", self.vpc_id, "must be set when subnetIds is set (the security group lives in that VPC)")
        outside = [name for name in self.default_instance_types if name not in self.allowed_instance_types]
        if outside:
            raise _fail("defaultInstanceTypes", list(self.default_instance_types), f"{outside} not in allowedInstanceTypes")
        if self.poll_min_seconds > self.poll_max_seconds:
            raise _fail("pollMinSeconds", self.poll_min_seconds, f"must be <= pollMaxSeconds ({self.poll_max_seconds})")
        if self.default_keep_alive_minutes > self.max_keep_alive_minutes:
            raise _fail(
                "defaultKeepAliveMinutes",
                self.default_keep_alive_minutes,
                f"must be <= maxKeepAliveMinutes ({self.max_keep_alive_minutes})",
            )

    def lambda_environment(self) -> dict[str, str]:
        """The settings part of the Lambda environment (names: lambdas/shared/config.py)."""
        return {
            "SUBNET_IDS": ",".join(self.subnet_ids),
            "ALLOWED_INSTANCE_TYPES": ",".join(self.allowed_instance_types),
            "DEFAULT_INSTANCE_TYPES": ",".join(self.default_instance_types),
            "MAX_SPOT_PRICE": "" if self.max_spot_price is None else f"{self.max_spot_price:g}",
            "BID_WAIT_SECONDS": str(self.bid_wait_seconds),
            "BID_MAX_CHECKS": str(self.bid_max_checks),
            "POLL_MIN_SECONDS": str(self.poll_min_seconds),
            "POLL_MAX_SECONDS": str(self.poll_max_seconds),
            "POLL_BACKOFF": f"{self.poll_backoff:g}",
            "HEARTBEAT_STALE_SECONDS": str(self.heartbeat_stale_seconds),
            "HEARTBEAT_LOST_SECONDS": str(self.heartbeat_lost_seconds),
            "POLLS_PER_EXECUTION": str(self.polls_per_execution),
            "MAX_RUNTIME_MINUTES": str(self.max_runtime_minutes),
            "MAX_ATTEMPTS": str(self.max_attempts),
            "DEFAULT_KEEP_ALIVE_MINUTES": str(self.default_keep_alive_minutes),
            "MAX_KEEP_ALIVE_MINUTES": str(self.max_keep_alive_minutes),
            "ON_DEMAND_FALLBACK": "true" if self.on_demand_fallback else "false",
            "SECONDS_PER_MINUTE": str(self.seconds_per_minute),
        }
