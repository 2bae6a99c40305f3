"""The stack's settings as its Lambdas see them: the environment variables the stack sets, and their parsing.

The stack sets every variable (see docs/ARCHITECTURE.md); a missing or malformed one is a deployment
bug, so it fails loudly, naming every bad variable at once rather than the first. The CLI checks a
spec against the defaults before anything is deployed, so these settings are part of the contract.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)
from pydantic import ValidationError
from typing_extensions import Annotated

from spottrain.contract.defaults import STACK_DEFAULTS


class EnvironmentConfigError(RuntimeError):
    """The function's environment is incomplete or malformed."""


def _csv(value: Any) -> Any:
    return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value


def _empty_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")
    return value


_Csv = Annotated[Tuple[str, ...], BeforeValidator(_csv)]
_Required = Annotated[str, AfterValidator(_not_blank)]
_DEFAULT = STACK_DEFAULTS


class Settings(BaseModel):
    """What every function knows about its stack; an unset optional variable keeps the stack's default.

    Built from field names (tests, the CLI) or from the environment variables (their aliases). pydantic
    parses the variables' strings: ints, "true"/"false", comma-separated lists. Counts and limits that
    must be at least 1 are PositiveInt; waits, keep-alives and caps where 0 means "none" are NonNegativeInt.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    stack_name: _Required = Field(alias="STACK_NAME")
    bucket_prefix: _Required = Field(alias="BUCKET_PREFIX")
    topic_arn: str = Field("", alias="TOPIC_ARN")
    launch_template_id: str = Field("", alias="LAUNCH_TEMPLATE_ID")
    subnet_ids: _Csv = Field(tuple(_DEFAULT["subnetIds"]), alias="SUBNET_IDS")
    allowed_instance_types: _Csv = Field(tuple(_DEFAULT["allowedInstanceTypes"]), alias="ALLOWED_INSTANCE_TYPES")
    default_instance_types: _Csv = Field(tuple(_DEFAULT["defaultInstanceTypes"]), alias="DEFAULT_INSTANCE_TYPES")
    max_spot_price: Annotated[Optional[PositiveFloat], BeforeValidator(_empty_is_none)] = Field(
        float(_DEFAULT["maxSpotPrice"]) if _DEFAULT["maxSpotPrice"] else None, alias="MAX_SPOT_PRICE"
    )
    # a job's spend cap at most, and by default (limits.max_cost_usd); None: no cap
    max_cost_usd: Annotated[Optional[PositiveFloat], BeforeValidator(_empty_is_none)] = Field(
        float(_DEFAULT["maxCostUsd"]) if _DEFAULT["maxCostUsd"] else None, alias="MAX_COST_USD"
    )
    agent_bucket: str = Field("", alias="AGENT_BUCKET")
    records_bucket: str = Field("", alias="RECORDS_BUCKET")  # receives the job buckets' access logs
    agent_key: str = Field("", alias="AGENT_KEY")
    # job bucket policies let only this job's sessions of the instance role in
    instance_role_arn: str = Field("", alias="INSTANCE_ROLE_ARN")
    # the role's unique id (AROA...): an instance's aws:userid starts with it
    instance_role_id: str = Field("", alias="INSTANCE_ROLE_ID")
    # the managed policy every job's secrets role is created with (functions/shared/secrets_role.py)
    secrets_boundary_arn: str = Field("", alias="SECRETS_BOUNDARY_ARN")
    bid_wait_seconds: NonNegativeInt = Field(_DEFAULT["bidWaitSeconds"], alias="BID_WAIT_SECONDS")
    bid_max_checks: PositiveInt = Field(_DEFAULT["bidMaxChecks"], alias="BID_MAX_CHECKS")
    # the callback wait's HeartbeatSeconds
    heartbeat_lost_seconds: PositiveInt = Field(_DEFAULT["heartbeatLostSeconds"], alias="HEARTBEAT_LOST_SECONDS")
    max_runtime_minutes: PositiveInt = Field(_DEFAULT["maxRuntimeMinutes"], alias="MAX_RUNTIME_MINUTES")
    max_attempts: PositiveInt = Field(_DEFAULT["maxAttempts"], alias="MAX_ATTEMPTS")
    default_keep_alive_minutes: NonNegativeInt = Field(
        _DEFAULT["defaultKeepAliveMinutes"], alias="DEFAULT_KEEP_ALIVE_MINUTES"
    )
    max_keep_alive_minutes: NonNegativeInt = Field(_DEFAULT["maxKeepAliveMinutes"], alias="MAX_KEEP_ALIVE_MINUTES")
    max_failure_keep_alive_minutes: NonNegativeInt = Field(
        _DEFAULT["maxFailureKeepAliveMinutes"], alias="MAX_FAILURE_KEEP_ALIVE_MINUTES"
    )
    on_demand_fallback: bool = Field(_DEFAULT["onDemandFallback"], alias="ON_DEMAND_FALLBACK")
    # Emulator-only, the agent's knob of the same name: the stack never sets it (a minute is 60 s on AWS);
    # spottrain/local shrinks minutes for the Lambdas it hosts as for the agents it starts.
    seconds_per_minute: PositiveInt = Field(60, alias="SPOTTRAIN_SECONDS_PER_MINUTE")
    instance_user: str = Field(_DEFAULT["instanceUser"], alias="INSTANCE_USER")
    # 0: give up at once when no pool has room
    capacity_wait_minutes: NonNegativeInt = Field(_DEFAULT["capacityWaitMinutes"], alias="CAPACITY_WAIT_MINUTES")
    max_capacity_wait_minutes: NonNegativeInt = Field(
        _DEFAULT["maxCapacityWaitMinutes"], alias="MAX_CAPACITY_WAIT_MINUTES"
    )
    max_sweep_variants: PositiveInt = Field(_DEFAULT["maxSweepVariants"], alias="MAX_SWEEP_VARIANTS")
    max_sweep_parallel: PositiveInt = Field(_DEFAULT["maxSweepParallel"], alias="MAX_SWEEP_PARALLEL")
    # known_hosts lines for a deploy key's ssh host when the spec gives none (repository_auth.known_hosts)
    ssh_known_hosts: str = Field(_DEFAULT["sshKnownHosts"], alias="SSH_KNOWN_HOSTS")


EMULATOR_ONLY_VARIABLES = ("SPOTTRAIN_SECONDS_PER_MINUTE",)
# What the stack sets for every function (docs/ARCHITECTURE.md "Lambda environment").
ENVIRONMENT_VARIABLES = tuple(
    field.alias
    for field in Settings.model_fields.values()
    if field.alias and field.alias not in EMULATOR_ONLY_VARIABLES
)


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Parse every variable; raise EnvironmentConfigError listing all problems. Absent optional ones keep defaults."""
    try:
        known = ENVIRONMENT_VARIABLES + EMULATOR_ONLY_VARIABLES
        return Settings.model_validate({name: env[name] for name in known if name in env})
    except ValidationError as exc:
        problems = [_problem(error, env) for error in exc.errors()]
        raise EnvironmentConfigError("Lambda environment is misconfigured: " + "; ".join(problems)) from None


def _problem(error: Any, env: Mapping[str, str]) -> str:
    name = str(error["loc"][0])
    if error["type"] == "missing" or (error["type"] == "value_error" and not env.get(name, "").strip()):
        return f"{name} is not set"
    return f"{name}={env.get(name)!r} is invalid: {error['msg']}"
