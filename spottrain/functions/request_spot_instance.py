"""Launch the job's instance: one spot instance from the stack's launch template, first pool that has room.

A pool is (instance type x subnet). RunInstances with spot market options answers synchronously, so a
pool without capacity or under the price cap fails here and the next one is tried; a pool that failed
once for this job is not tried again. When every pool fails the job may fall back to on-demand (if both
the job and the stack allow it); otherwise the state machine stops with NoSpotCapacity.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Callable

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout
from spottrain.contract.limits import wait_timeout_seconds
from spottrain.contract.settings import Settings
from spottrain.contract.status import BidStatus, JobStatus, LaunchStatus
from spottrain.contract.userdata import render_user_data
from spottrain.functions.shared import pricing, report, runtime
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared.bucket_policy import admit_instance

logger = Logger(service="spottrain-request-spot-instance")

# EC2 answers these when a pool cannot take the instance now; another pool may.
POOL_FAILURE_CODES = frozenset({
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
})


@dataclasses.dataclass(frozen=True)
class Pool:
    instance_type: str
    subnet_id: str
    az: str

    @property
    def key(self) -> str:
        return pool_key(self.instance_type, self.subnet_id)


def pool_key(instance_type: str, subnet_id: str) -> str:
    return f"{instance_type}/{subnet_id}"


class NoSubnetToLaunchInto(RuntimeError):
    """Neither the stack's SUBNET_IDS nor a default VPC gives a subnet."""


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    logger.append_keys(job=event["job"]["exec_name"], execution=event["execution"]["name"])
    with transient_errors():
        return request_instance(runtime.client("ec2"), runtime.client("s3"), runtime.settings(), event)


def request_instance(ec2: Any, s3: Any, settings: Settings, state: dict) -> dict:
    """Launch (or fail to launch) this attempt's instance; returns the state's `launch` value."""
    attempt, pools_failed = next_attempt(state)
    pools = candidate_pools(ec2, settings, state["job"])
    launch = functools.partial(_run_instance, ec2, settings, state, attempt)
    launched = _first_pool_that_launches(launch, pools, pools_failed)
    if launched is None and _on_demand_allowed(settings, state["job"]):
        logger.warning("no spot capacity in any pool, launching on-demand", extra={"pool": pools[0].key})
        launched = _first_pool_that_launches(functools.partial(launch, spot=False), pools[:1], [])
    if launched is None:
        logger.warning("every candidate pool failed", extra={"pools_failed": pools_failed})
        return {
            "status": LaunchStatus.EXHAUSTED.value,
            "attempt": attempt,
            "instance": None,
            "pools_failed": pools_failed,
            "wait_seconds": 0,
        }
    bucket = state["storage"]["bucket"]
    # First, before anything slower: until then the bucket's policy shuts the new instance out.
    admit_instance(s3, bucket, settings.instance_role_arn, settings.instance_role_id, launched[0]["InstanceId"])
    instance = _instance_record(ec2, settings, *launched)
    report.record_launch(s3, bucket, state["job"]["exec_name"], attempt, instance)
    logger.info("instance launched", extra={"attempt": attempt, **instance})
    return {
        "status": LaunchStatus.LAUNCHED.value,
        "attempt": attempt,
        "instance": instance,
        "pools_failed": pools_failed,
        "wait_seconds": settings.bid_wait_seconds,
        # The attempt's callback wait (HeartbeatSecondsPath, TimeoutSecondsPath): Step Functions needs whole seconds.
        "heartbeat_timeout_seconds": settings.heartbeat_lost_seconds,
        "wait_timeout_seconds": wait_timeout_seconds(state["job"], settings),
    }


def next_attempt(state: dict) -> tuple[int, list[str]]:
    """The attempt this launch belongs to, and the pools already failed for this job.

    A relaunch after an interruption of the current attempt starts the next attempt (it resumes from
    checkpoints); a relaunch after a failed bid retries the same attempt elsewhere, so that pool joins
    the failed ones.
    """
    launch = state.get("launch")
    if not launch:
        return 1, []
    pools_failed = list(launch.get("pools_failed") or [])
    poll = state.get("poll") or {}
    if poll.get("status") == JobStatus.INTERRUPTED.value and poll.get("attempt") == launch["attempt"]:
        return launch["attempt"] + 1, pools_failed
    instance = launch.get("instance")
    bid = state.get("bid") or {}
    if bid.get("status") == BidStatus.FAILED.value and instance:
        failed = pool_key(instance["instance_type"], instance["subnet_id"])
        if failed not in pools_failed:
            pools_failed.append(failed)
    return launch["attempt"], pools_failed


def candidate_pools(ec2: Any, settings: Settings, job: dict) -> list[Pool]:
    """Instance types in the job's (or the stack's) order, each across every subnet."""
    types = (job.get("instance") or {}).get("types") or settings.default_instance_types
    subnets = _subnets(ec2, settings)
    return [Pool(t, s["SubnetId"], s["AvailabilityZone"]) for t in types for s in subnets]


def _subnets(ec2: Any, settings: Settings) -> list[dict]:
    if settings.subnet_ids:
        subnets = ec2.describe_subnets(SubnetIds=list(settings.subnet_ids))["Subnets"]
        order = {subnet_id: i for i, subnet_id in enumerate(settings.subnet_ids)}
        return sorted(subnets, key=lambda s: order[s["SubnetId"]])
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    if not subnets:
        raise NoSubnetToLaunchInto(
            "SUBNET_IDS is empty and this region has no default VPC subnets: "
            "deploy the stack with subnet ids (context subnetIds) to launch into"
        )
    return sorted(subnets, key=lambda s: s["AvailabilityZone"])


def _first_pool_that_launches(
    launch: Callable[[Pool], dict], pools: list[Pool], pools_failed: list[str]
) -> tuple[dict, Pool] | None:
    """Try pools in order; capacity/price answers mark the pool failed (in place) and move on."""
    for pool in pools:
        if pool.key in pools_failed:
            continue
        try:
            return launch(pool), pool
        except ClientError as exc:
            code = error_code(exc)
            if code in POOL_FAILURE_CODES:
                logger.warning("pool failed", extra={"pool": pool.key, "code": code})
                pools_failed.append(pool.key)
                continue
            raise
    return None


def _on_demand_allowed(settings: Settings, job: dict) -> bool:
    return settings.on_demand_fallback and bool((job.get("instance") or {}).get("on_demand_fallback"))


def _run_instance(ec2: Any, settings: Settings, state: dict, attempt: int, pool: Pool, spot: bool = True) -> dict:
    params = launch_parameters(settings, state, attempt, pool, spot, region=ec2.meta.region_name)
    return ec2.run_instances(**params)["Instances"][0]


def launch_parameters(settings: Settings, state: dict, attempt: int, pool: Pool, spot: bool, region: str) -> dict:
    job = state["job"]
    params: dict[str, Any] = {
        "LaunchTemplate": {"LaunchTemplateId": settings.launch_template_id, "Version": "$Latest"},
        "InstanceType": pool.instance_type,
        "SubnetId": pool.subnet_id,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": render_user_data(
            bucket=state["storage"]["bucket"],
            attempt=attempt,
            region=region,
            agent_bucket=settings.agent_bucket,
            agent_key=settings.agent_key,
            run_as=settings.instance_user,
        ),
        "TagSpecifications": _tag_specifications(settings, state, attempt, spot),
    }
    if spot:
        params["InstanceMarketOptions"] = _spot_options(settings)
    volume_gb = (job.get("instance") or {}).get("volume_gb")
    if volume_gb:
        params["BlockDeviceMappings"] = [{
            "DeviceName": "/dev/sda1",
            "Ebs": {"VolumeSize": volume_gb, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True},
        }]
    return params


def _spot_options(settings: Settings) -> dict:
    # One-time + terminate: a reclaimed instance never comes back by itself; the workflow relaunches.
    options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if settings.max_spot_price:
        options["MaxPrice"] = f"{settings.max_spot_price:.4f}"
    return {"MarketType": "spot", "SpotOptions": options}


def _tag_specifications(settings: Settings, state: dict, attempt: int, spot: bool) -> list[dict]:
    exec_name = state["job"]["exec_name"]
    tags = [
        {"Key": "Name", "Value": f"spottrain-{exec_name}"},
        {"Key": layout.TAG_STACK, "Value": settings.stack_name},
        {"Key": layout.TAG_JOB, "Value": exec_name},
        {"Key": layout.TAG_EXECUTION, "Value": state["execution"]["name"]},
        {"Key": layout.TAG_ATTEMPT, "Value": str(attempt)},
    ]
    resource_types = ["instance", "volume"] + (["spot-instances-request"] if spot else [])
    return [{"ResourceType": kind, "Tags": tags} for kind in resource_types]


def _instance_record(ec2: Any, settings: Settings, instance: dict, pool: Pool) -> dict:
    spot = instance.get("InstanceLifecycle") == "spot" or bool(instance.get("SpotInstanceRequestId"))
    on_demand = pricing.on_demand_price(pool.instance_type)
    price = on_demand
    if spot:
        price = _spot_price(ec2, pool) or settings.max_spot_price or on_demand
    return {
        "instance_id": instance["InstanceId"],
        "instance_type": pool.instance_type,
        "subnet_id": pool.subnet_id,
        "az": pool.az,
        "lifecycle": "spot" if spot else "on-demand",
        "spot_request_id": instance.get("SpotInstanceRequestId"),
        "launched_at": report.isoformat(instance.get("LaunchTime") or report.utcnow()),
        "price_per_hour": price,
        "on_demand_price_per_hour": on_demand,
    }


def _spot_price(ec2: Any, pool: Pool) -> float | None:
    """The pool's latest spot price; None when EC2 has none to give (estimates fall back)."""
    history = ec2.describe_spot_price_history(
        InstanceTypes=[pool.instance_type],
        ProductDescriptions=["Linux/UNIX"],
        Filters=[{"Name": "availability-zone", "Values": [pool.az]}],
        StartTime=dt.datetime.now(dt.timezone.utc),
        MaxResults=1,
    )["SpotPriceHistory"]
    prices = [float(entry["SpotPrice"]) for entry in history if entry.get("SpotPrice")]
    return prices[0] if prices else None

