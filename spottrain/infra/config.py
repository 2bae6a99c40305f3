"""The stack's configuration, read from CDK context (spottrain/contract/defaults.py, cdk.json, `-c key=value`, or build_app).

Values from `cdk.json` or build_app arrive as JSON; values from `-c` arrive as strings. pydantic parses
both to the same `StackConfig`, and bad values fail synthesis naming every key, its rule and the fix,
rather than deploying a stack whose Lambdas reject their own environment at the first job.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Callable

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    StringConstraints,
    ValidationError,
)

from spottrain.contract import ssh
from spottrain.contract.names import LINUX_USER_NAME

_INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
# It starts every job bucket name, and `-<exec_name>` must still fit S3's 63 characters.
_BUCKET_PREFIX = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_SSM_NAME = r"^/\S+$"
_VPC_ID = r"^vpc-[0-9a-f]+$"
_SUBNET_ID = r"^subnet-[0-9a-f]+$"
# S3 general purpose bucket names (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)
_DATA_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class ConfigError(ValueError):
    """Context values break their rules; the message names each key, its rule and the fix."""


_USER_RULE = (
    "must be the AMI's default Linux user, e.g. ubuntu (Deep Learning AMIs on Ubuntu) or ec2-user "
    "(Amazon Linux): lowercase letters, digits, '_' and '-'"
)
_INSTANCE_TYPE_RULE = "is not an EC2 instance type (family.size, e.g. g5.xlarge)"


def _error(key: str, value: Any, rule: str) -> str:
    return f"context {key}={value!r}: {rule}. Fix it in cdk.json or pass -c {key}=<value>."


def _text(value: Any) -> Any:
    return "" if value is None else str(value) if isinstance(value, (int, float)) else value


def _items(value: Any) -> Any:
    """`-c subnetIds='["subnet-1"]'` and `-c subnetIds=subnet-1,subnet-2` both mean a list; absent or "" none."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        value = json.loads(stripped) if stripped.startswith("[") else stripped.split(",")
    return (
        tuple(str(item).strip() for item in value if str(item).strip()) if isinstance(value, (list, tuple)) else value
    )


def _empty_is_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _text_rule(pattern: str) -> StringConstraints:
    # "" stays allowed: an unset optional key (vpcId, bucketPrefix, notificationEmail) means "none"
    return StringConstraints(strip_whitespace=True, pattern=f"^$|{pattern}")


# Lambda allows 4 KB of environment variables in all (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html);
# the others take about 1 KB, and one host's ssh-keyscan lines about 850 bytes (its ed25519 line alone about 100).
_KNOWN_HOSTS_MAX_CHARS = 2048


def _known_hosts(value: str) -> str:
    if len(value) > _KNOWN_HOSTS_MAX_CHARS or (value.strip() and ssh.parse_known_hosts(value)[1]):
        raise ValueError("not known_hosts lines, or too long")
    return value


_KnownHosts = Annotated[str, BeforeValidator(_text), AfterValidator(_known_hosts)]
_Email = Annotated[str, BeforeValidator(_text), _text_rule(_EMAIL)]
_SsmName = Annotated[str, BeforeValidator(_text), _text_rule(_SSM_NAME)]
_LinuxUser = Annotated[str, BeforeValidator(_text), _text_rule(LINUX_USER_NAME.pattern)]
_VpcId = Annotated[str, BeforeValidator(_text), _text_rule(_VPC_ID)]
_BucketPrefix = Annotated[str, BeforeValidator(_text), _text_rule(_BUCKET_PREFIX)]
_InstanceTypes = Annotated[
    tuple[Annotated[str, StringConstraints(pattern=_INSTANCE_TYPE)], ...], BeforeValidator(_items)
]
_SubnetIds = Annotated[tuple[Annotated[str, StringConstraints(pattern=_SUBNET_ID)], ...], BeforeValidator(_items)]
_BucketNames = Annotated[tuple[Annotated[str, StringConstraints(pattern=_DATA_BUCKET)], ...], BeforeValidator(_items)]


class StackConfig(BaseModel):
    """The context, parsed by pydantic: fields are named by their context keys; `description` is each one's rule."""

    # python-re: the contract's LINUX_USER_NAME ends in \\Z, which Rust's regex (pydantic's default) lacks
    model_config = ConfigDict(frozen=True, populate_by_name=True, regex_engine="python-re")

    notification_email: _Email = Field(alias="notificationEmail", description="must be an email address")
    allowed_instance_types: _InstanceTypes = Field(alias="allowedInstanceTypes", description=_INSTANCE_TYPE_RULE)
    default_instance_types: _InstanceTypes = Field(alias="defaultInstanceTypes", description=_INSTANCE_TYPE_RULE)
    ami_ssm_parameter: _SsmName = Field(
        alias="amiSsmParameter", description="must be an SSM parameter name starting with /"
    )
    # the AMI's default user: the job's commands run as it, in its home, as in 2017
    instance_user: _LinuxUser = Field(alias="instanceUser", description=_USER_RULE)
    vpc_id: _VpcId = Field(alias="vpcId", description="must be a VPC id like vpc-0abc123, or empty for the default VPC")
    subnet_ids: _SubnetIds = Field(alias="subnetIds", description="is not a subnet id like subnet-0abc123")
    # read-only for every job's instance: where data_get_command fetches from (the 2017 job's s3://pix2pixfacade)
    data_buckets: _BucketNames = Field(alias="dataBuckets", description="is not an S3 bucket name like my-datasets")
    bucket_prefix: _BucketPrefix = Field(  # "" = spottrain-<account>
        alias="bucketPrefix", description="must be 3-40 lowercase letters, digits or hyphens (job bucket names)"
    )
    max_spot_price: Annotated[PositiveFloat | None, BeforeValidator(_empty_is_none)] = Field(
        alias="maxSpotPrice", description="must be a number > 0, or empty for the on-demand price"
    )
    # a job's spend cap at most, and by default (limits.max_cost_usd)
    max_cost_usd: Annotated[PositiveFloat | None, BeforeValidator(_empty_is_none)] = Field(
        alias="maxCostUsd", description="must be a number > 0, or empty for no spend cap"
    )
    root_volume_gb: int = Field(alias="rootVolumeGb", ge=8, description="must be a whole number >= 8")
    bid_wait_seconds: int = Field(alias="bidWaitSeconds", ge=0, description="must be a whole number >= 0")
    bid_max_checks: int = Field(alias="bidMaxChecks", ge=1, description="must be a whole number >= 1")
    # the callback wait's HeartbeatSeconds
    heartbeat_lost_seconds: int = Field(alias="heartbeatLostSeconds", ge=1, description="must be a whole number >= 1")
    max_runtime_minutes: int = Field(alias="maxRuntimeMinutes", ge=1, description="must be a whole number >= 1")
    max_attempts: int = Field(alias="maxAttempts", ge=1, description="must be a whole number >= 1")
    default_keep_alive_minutes: int = Field(
        alias="defaultKeepAliveMinutes", ge=0, description="must be a whole number >= 0"
    )
    max_keep_alive_minutes: int = Field(alias="maxKeepAliveMinutes", ge=0, description="must be a whole number >= 0")
    # the debug door: 0 = none, and the instance role gets no Session Manager permissions
    max_failure_keep_alive_minutes: int = Field(
        alias="maxFailureKeepAliveMinutes", ge=0, description="must be a whole number >= 0"
    )
    on_demand_fallback: bool = Field(alias="onDemandFallback", description="must be true or false")
    # 0: give up at once when no pool has room
    capacity_wait_minutes: int = Field(alias="capacityWaitMinutes", ge=0, description="must be a whole number >= 0")
    max_capacity_wait_minutes: int = Field(
        alias="maxCapacityWaitMinutes", ge=0, description="must be a whole number >= 0"
    )
    job_timeout_hours: float = Field(alias="jobTimeoutHours", gt=0, description="must be a number > 0")
    log_retention_days: int = Field(alias="logRetentionDays", ge=1, description="must be a whole number >= 1")
    # a sweep's variants (child executions) and how many run at once (its Map state's MaxConcurrency)
    max_sweep_variants: int = Field(alias="maxSweepVariants", ge=1, description="must be a whole number >= 1")
    max_sweep_parallel: int = Field(alias="maxSweepParallel", ge=1, description="must be a whole number >= 1")
    # known_hosts for deploy keys' ssh hosts, for jobs whose repository_auth gives none
    ssh_known_hosts: _KnownHosts = Field(
        alias="sshKnownHosts",
        description=(
            f"must be known_hosts lines as `ssh-keyscan HOST` prints them (one per line), at most "
            f"{_KNOWN_HOSTS_MAX_CHARS} characters (it shares Lambda's 4 KB of environment: keep ed25519 lines, "
            "`ssh-keyscan -t ed25519 HOST`), or empty"
        ),
    )
    # None = the pinned public layer, "" = no layer
    powertools_layer_arn: str | None = Field(alias="powertoolsLayerArn", description="must be a layer ARN or empty")

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "StackConfig":
        """`get` is node.try_get_context; every key has its default in spottrain/contract/defaults.py.

        Raises ConfigError naming every bad key at once, each with its rule and the fix.
        """
        context = {field.alias: get(field.alias) for field in cls.model_fields.values() if field.alias}
        try:
            config = cls.model_validate(context)
        except ValidationError as exc:
            raise ConfigError("\n".join(_problem(error, context) for error in exc.errors())) from None
        config._check_consistency()
        return config

    def _check_consistency(self) -> None:
        if not self.allowed_instance_types:
            raise ConfigError(
                _error("allowedInstanceTypes", [], "must name at least one EC2 instance type, e.g. g5.xlarge")
            )
        if not self.instance_user:
            raise ConfigError(_error("instanceUser", "", _USER_RULE))
        if not self.default_instance_types:
            raise ConfigError(
                _error("defaultInstanceTypes", [], "must name at least one EC2 instance type, e.g. g5.xlarge")
            )
        outside = [name for name in self.default_instance_types if name not in self.allowed_instance_types]
        if outside:
            defaults = list(self.default_instance_types)
            raise ConfigError(_error("defaultInstanceTypes", defaults, f"{outside} not in allowedInstanceTypes"))
        if self.subnet_ids and not self.vpc_id:
            rule = "must be set when subnetIds is set (the security group lives in that VPC)"
            raise ConfigError(_error("vpcId", self.vpc_id, rule))
        if self.default_keep_alive_minutes > self.max_keep_alive_minutes:
            limit = f"must be <= maxKeepAliveMinutes ({self.max_keep_alive_minutes})"
            raise ConfigError(_error("defaultKeepAliveMinutes", self.default_keep_alive_minutes, limit))
        if self.capacity_wait_minutes > self.max_capacity_wait_minutes:
            limit = f"must be <= maxCapacityWaitMinutes ({self.max_capacity_wait_minutes})"
            raise ConfigError(_error("capacityWaitMinutes", self.capacity_wait_minutes, limit))

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
            "MAX_FAILURE_KEEP_ALIVE_MINUTES": str(self.max_failure_keep_alive_minutes),
            "ON_DEMAND_FALLBACK": "true" if self.on_demand_fallback else "false",
            "CAPACITY_WAIT_MINUTES": str(self.capacity_wait_minutes),
            "MAX_CAPACITY_WAIT_MINUTES": str(self.max_capacity_wait_minutes),
            "MAX_SWEEP_VARIANTS": str(self.max_sweep_variants),
            "MAX_SWEEP_PARALLEL": str(self.max_sweep_parallel),
            "SSH_KNOWN_HOSTS": self.ssh_known_hosts,
        }


def _problem(error: Any, context: dict[str, Any]) -> str:
    key = str(error["loc"][0])
    rule = StackConfig.model_fields[_FIELD_BY_KEY[key]].description or error["msg"]
    if len(error["loc"]) > 1 and isinstance(error["input"], str):  # one item of a list
        rule = f"{error['input']!r} {rule}"
    elif error["type"] in ("tuple_type", "list_type"):
        rule = "must be a list or a comma-separated string"
    return _error(key, context.get(key), rule)


_FIELD_BY_KEY = {field.alias: name for name, field in StackConfig.model_fields.items()}
