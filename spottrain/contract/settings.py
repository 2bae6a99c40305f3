"""The stack's settings as its Lambdas see them: the environment variables the stack sets, and their parsing.

The stack sets every variable (see docs/ARCHITECTURE.md); a missing or malformed one is a deployment
bug, so it fails loudly, naming every bad variable at once rather than the first. The CLI checks a
spec against the defaults before anything is deployed, so these settings are part of the contract.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

from spottrain.contract.defaults import STACK_DEFAULTS


class EnvironmentConfigError(RuntimeError):
    """The function's environment is incomplete or malformed."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("expected true or false")
    return lowered in ("true", "1", "yes")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be > 0")
    return number


def _optional_float(value: str) -> float | None:
    return _positive_float(value) if value.strip() else None


_DEFAULT = STACK_DEFAULTS


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every function knows about its stack; an unset optional variable keeps the stack's default."""

    stack_name: str
    bucket_prefix: str
    topic_arn: str = ""
    launch_template_id: str = ""
    subnet_ids: tuple[str, ...] = tuple(_DEFAULT["subnetIds"])
    allowed_instance_types: tuple[str, ...] = tuple(_DEFAULT["allowedInstanceTypes"])
    default_instance_types: tuple[str, ...] = tuple(_DEFAULT["defaultInstanceTypes"])
    max_spot_price: float | None = float(_DEFAULT["maxSpotPrice"]) if _DEFAULT["maxSpotPrice"] else None
    max_cost_usd: float | None = float(_DEFAULT["maxCostUsd"]) if _DEFAULT["maxCostUsd"] else None
    agent_bucket: str = ""
    agent_key: str = ""
    bid_wait_seconds: int = _DEFAULT["bidWaitSeconds"]
    bid_max_checks: int = _DEFAULT["bidMaxChecks"]
    heartbeat_lost_seconds: int = _DEFAULT["heartbeatLostSeconds"]  # the callback wait's HeartbeatSeconds
    max_runtime_minutes: int = _DEFAULT["maxRuntimeMinutes"]
    max_attempts: int = _DEFAULT["maxAttempts"]
    default_keep_alive_minutes: int = _DEFAULT["defaultKeepAliveMinutes"]
    max_keep_alive_minutes: int = _DEFAULT["maxKeepAliveMinutes"]
    on_demand_fallback: bool = _DEFAULT["onDemandFallback"]
    capacity_wait_minutes: int = _DEFAULT["capacityWaitMinutes"]
    max_capacity_wait_minutes: int = _DEFAULT["maxCapacityWaitMinutes"]
    seconds_per_minute: int = _DEFAULT["secondsPerMinute"]
    instance_user: str = _DEFAULT["instanceUser"]
    max_sweep_variants: int = _DEFAULT["maxSweepVariants"]
    max_sweep_parallel: int = _DEFAULT["maxSweepParallel"]


# field name -> (environment variable, parser, required)
_FIELDS: dict[str, tuple[str, Callable[[str], object], bool]] = {
    "stack_name": ("STACK_NAME", str, True),
    "bucket_prefix": ("BUCKET_PREFIX", str, True),
    "topic_arn": ("TOPIC_ARN", str, False),
    "launch_template_id": ("LAUNCH_TEMPLATE_ID", str, False),
    "subnet_ids": ("SUBNET_IDS", _csv, False),
    "allowed_instance_types": ("ALLOWED_INSTANCE_TYPES", _csv, False),
    "default_instance_types": ("DEFAULT_INSTANCE_TYPES", _csv, False),
    "max_spot_price": ("MAX_SPOT_PRICE", _optional_float, False),
    "max_cost_usd": ("MAX_COST_USD", _optional_float, False),
    "agent_bucket": ("AGENT_BUCKET", str, False),
    "agent_key": ("AGENT_KEY", str, False),
    "bid_wait_seconds": ("BID_WAIT_SECONDS", _positive_int, False),
    "bid_max_checks": ("BID_MAX_CHECKS", _positive_int, False),
    "heartbeat_lost_seconds": ("HEARTBEAT_LOST_SECONDS", _positive_int, False),
    "max_runtime_minutes": ("MAX_RUNTIME_MINUTES", _positive_int, False),
    "max_attempts": ("MAX_ATTEMPTS", _positive_int, False),
    "default_keep_alive_minutes": ("DEFAULT_KEEP_ALIVE_MINUTES", _positive_int, False),
    "max_keep_alive_minutes": ("MAX_KEEP_ALIVE_MINUTES", _positive_int, False),
    "on_demand_fallback": ("ON_DEMAND_FALLBACK", _bool, False),
    "capacity_wait_minutes": ("CAPACITY_WAIT_MINUTES", _positive_int, False),
    "max_capacity_wait_minutes": ("MAX_CAPACITY_WAIT_MINUTES", _positive_int, False),
    "seconds_per_minute": ("SECONDS_PER_MINUTE", _positive_int, False),
    "instance_user": ("INSTANCE_USER", str, False),
    "max_sweep_variants": ("MAX_SWEEP_VARIANTS", _positive_int, False),
    "max_sweep_parallel": ("MAX_SWEEP_PARALLEL", _positive_int, False),
}

ENVIRONMENT_VARIABLES = tuple(name for name, _, _ in _FIELDS.values())


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Parse every variable; raise EnvironmentConfigError listing all problems. Absent optional ones keep defaults."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for field, (name, parse, required) in _FIELDS.items():
        raw = env.get(name)
        if raw is None or (required and not raw.strip()):
            if required:
                problems.append(f"{name} is not set")
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            problems.append(f"{name}={raw!r} is invalid: {exc}")
    if problems:
        raise EnvironmentConfigError("Lambda environment is misconfigured: " + "; ".join(problems))
    return Settings(**values)
