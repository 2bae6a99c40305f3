"""Launch the job's instance: one spot instance from the stack's launch template, first pool that has room.

A pool is (instance type x subnet), tried best first (`shared/pools.py`: placement score, the spec's type
order, spot price; the pool that just reclaimed our instance last). RunInstances with spot market options
answers synchronously, so a pool without capacity or under the price cap fails here and the next one is tried; a pool that refused
is skipped until its back-off expires (`shared/capacity.py`). When no pool launches, the attempt waits
(WAITING: the workflow's Wait state, then this task again) for up to the job's capacity_wait_minutes;
once that window is over the job may fall back to on-demand (if both the job and the stack allow it),
otherwise the state machine stops with NoSpotCapacity.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, Callable

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from spottrain.contract import layout, spendcap
from spottrain.contract.limits import BOOTSTRAP_MARGIN_MINUTES, capacity_wait_seconds, wait_timeout_seconds
from spottrain.contract.settings import Settings
from spottrain.contract.status import BidStatus, JobStatus, LaunchStatus
from spottrain.contract.userdata import render_user_data
from spottrain.functions.shared import capacity, ondemand, pricing, report, runtime, secrets_role, spend
from spottrain.functions.shared.pools import Pool, Ranked, pool_key, rank
from spottrain.functions.shared.awserrors import error_code, transient_errors
from spottrain.functions.shared.bucket_policy import admit_instance

logger = Logger(service="spottrain-request-spot-instance")

# EC2 answers these when a pool cannot take the instance now; another pool may.
POOL_FAILURE_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
    }
)


class NoSubnetToLaunchInto(RuntimeError):
    """Neither the stack's SUBNET_IDS nor a default VPC gives a subnet."""


@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    logger.append_keys(job=event["job"]["exec_name"], execution=event["execution"]["name"])
    with transient_errors():
        return request_instance(
            runtime.client("ec2"),
            runtime.client("s3"),
            runtime.settings(),
            event,
            pricing_api=runtime.pricing_client(),
            iam=runtime.client("iam"),
        )


def request_instance(
    ec2: Any,
    s3: Any,
    settings: Settings,
    state: dict,
    now: dt.datetime | None = None,
    pricing_api: Any = None,
    iam: Any = None,
) -> dict:
    """Launch (or wait for, or give up on) this attempt's instance; returns the state's `launch` value.

    `launch.status`: LAUNCHED (`instance`, `wait_seconds` before the bid check), WAITING (no pool had
    room: `wait_seconds` until the next try, `capacity_wait` the window) or EXHAUSTED (the window is over).
    """
    now = now or report.utcnow()
    attempt, pools, wait = next_attempt(state, settings, now)
    demoted = _demoted(state)
    ranked = rank(ec2, candidate_pools(ec2, settings, state["job"]), ec2.meta.region_name, demoted)
    candidates = [entry.pool for entry in ranked]
    launch = functools.partial(_run_instance, ec2, settings, state, attempt)

    def on_demand_launch(why: str) -> tuple[dict, Pool] | None:
        logger.warning("launching on-demand", extra={"why": why})
        return _first_pool_that_launches(functools.partial(launch, spot=False), candidates, {}, now, 0)

    job, minute = state["job"], settings.seconds_per_minute
    reason = ondemand.after_interruptions(job, attempt)
    launched = on_demand_launch(reason) if reason else _first_pool_that_launches(launch, candidates, pools, now, minute)
    if launched is None:
        wait = capacity.started_or_kept(wait, now, capacity_wait_seconds(job, settings))
        waited_enough = None if reason else ondemand.after_waiting(job, wait, now, minute)
        if waited_enough:
            reason, launched = waited_enough, on_demand_launch(waited_enough)
    if launched is None:
        assert wait is not None  # started_or_kept above, whenever nothing launched
        seconds = capacity.seconds_until_retry(pools, wait, now, minute)
        if seconds is not None:
            return _waiting(s3, state, attempt, pools, {**wait, "waits": wait["waits"] + 1}, seconds)
        if _on_demand_allowed(settings, job):
            reason = "no spot capacity for the whole capacity wait (instance.on_demand_fallback)"
            launched = on_demand_launch(reason)
    if launched is None:
        return _exhausted(s3, state, attempt, pools, wait, now) | {"demoted": demoted}
    chosen = next(entry for entry in ranked if entry.pool == launched[1])
    list_price = pricing.list_price(pricing_api, ec2.meta.region_name, chosen.pool.instance_type)
    result = _launched(s3, settings, state, attempt, pools, wait, launched[0], chosen, list_price, demoted, now, iam)
    return result | {
        "demoted": demoted,
        "on_demand_reason": None if result["instance"]["lifecycle"] == "spot" else reason,
    }


def _demoted(state: dict) -> str | None:
    """The pool that reclaimed the last attempt's instance: tried last for the attempt after it."""
    launch, poll = state.get("launch") or {}, state.get("poll") or {}
    instance = launch.get("instance")
    if instance and poll.get("status") == JobStatus.INTERRUPTED.value and poll.get("attempt") == launch["attempt"]:
        return pool_key(instance["instance_type"], instance["subnet_id"])
    return launch.get("demoted")


def _waiting(s3: Any, state: dict, attempt: int, pools: dict, wait: dict, seconds: int) -> dict:
    logger.warning("no pool has capacity, waiting", extra={"wait_seconds": seconds, "capacity_wait": wait})
    report.record_capacity_wait(s3, state["storage"]["bucket"], attempt, wait, sorted(pools))
    return {
        "status": LaunchStatus.WAITING.value,
        "attempt": attempt,
        "instance": None,
        "pools": pools,
        "demoted": _demoted(state),
        "pools_failed": sorted(pools),
        "capacity_wait": wait,
        "wait_seconds": seconds,
        "capacity_wait_begins": wait["waits"] == 1,
    }  # the one email of this wait goes out now


def _exhausted(s3: Any, state: dict, attempt: int, pools: dict, wait: dict | None, now: dt.datetime) -> dict:
    logger.warning("every candidate pool failed", extra={"pools_failed": sorted(pools)})
    if wait and wait["waits"]:
        wait = {**wait, "outcome": capacity.GAVE_UP, "ended_at": report.isoformat(now)}
        report.record_capacity_wait(s3, state["storage"]["bucket"], attempt, wait, sorted(pools))
    return {
        "status": LaunchStatus.EXHAUSTED.value,
        "attempt": attempt,
        "instance": None,
        "pools": pools,
        "pools_failed": sorted(pools),
        "capacity_wait": wait,
        "wait_seconds": 0,
        "capacity_wait_begins": False,
    }


def _launched(
    s3: Any,
    settings: Settings,
    state: dict,
    attempt: int,
    pools: dict,
    wait: dict | None,
    launched: dict,
    chosen: Ranked,
    on_demand: pricing.OnDemandPrice,
    demoted: str | None,
    now: dt.datetime,
    iam: Any = None,
) -> dict:
    bucket = state["storage"]["bucket"]
    # First, before anything slower: until then the bucket's policy (and the secrets role's trust) shuts it out.
    admit_instance(s3, bucket, settings.instance_role_arn, settings.instance_role_id, launched["InstanceId"])
    role = state["storage"].get("secrets_role")
    if role:
        secrets_role.admit_instance(iam, settings, role, launched["InstanceId"])
    volume_gb = (state["job"].get("instance") or {}).get("volume_gb")
    instance = _instance_record(settings, launched, chosen, on_demand) | {
        "demoted_pool": demoted,
        "volume_gb": volume_gb,
    }
    doc = report.record_launch(s3, bucket, state["job"]["exec_name"], attempt, instance)
    budget = spend.write_budget(s3, bucket, state["job"], doc, attempt, instance, state["execution"]["id"])
    result = {
        "status": LaunchStatus.LAUNCHED.value,
        "attempt": attempt,
        "instance": instance,
        "pools": pools,
        "pools_failed": sorted(pools),
        "capacity_wait": wait,
        "capacity_wait_begins": False,
        "wait_seconds": settings.bid_wait_seconds,
        # The attempt's callback wait (HeartbeatSecondsPath, TimeoutSecondsPath): Step Functions needs whole seconds.
        "heartbeat_timeout_seconds": settings.heartbeat_lost_seconds,
        "wait_timeout_seconds": _wait_timeout(state["job"], settings, instance, budget),
    }
    if wait and wait["waits"] and wait["outcome"] == capacity.WAITING:
        # This launch ends a wait: the success email says how long it took.
        wait = {**wait, "outcome": capacity.FOUND, "ended_at": report.isoformat(now)}
        report.record_capacity_wait(s3, bucket, attempt, wait, sorted(pools))
        result.update(capacity_wait=wait, capacity_found_after_seconds=capacity.waited_seconds(wait, now))
    logger.info("instance launched", extra={"attempt": attempt, **instance})
    return result


def _wait_timeout(job: dict, settings: Settings, instance: dict, budget: dict | None) -> int:
    """The attempt's callback wait: max runtime's (contract/limits.py), and with a spend cap no longer than
    the budget's stop plus the bootstrap margin.

    Only the agent reads budget.json; code running as root on the instance can stop the agent and keep the
    instance up. When the wait times out, PollCompletion terminates an instance that is still running, so
    the workflow itself bounds what an attempt spends.
    """
    seconds = wait_timeout_seconds(job, settings)
    stop_at = spendcap.stop_time(budget)
    if stop_at is None:
        return seconds
    until_stop = max(0.0, (stop_at - report.parse_time(instance["launched_at"])).total_seconds())
    capped = math.ceil(until_stop) + BOOTSTRAP_MARGIN_MINUTES * settings.seconds_per_minute
    return max(min(seconds, capped), settings.heartbeat_lost_seconds + 1)


def next_attempt(state: dict, settings: Settings, now: dt.datetime) -> tuple[int, dict, dict | None]:
    """The attempt this launch belongs to, each pool's refusals so far, and the attempt's wait for capacity.

    A relaunch after an interruption of the current attempt starts the next attempt (it resumes from
    checkpoints) and a wait of its own; a relaunch after a failed bid or a wait retries the same
    attempt, and a failed bid counts as a refusal of its pool. Pools keep their back-off across attempts.
    """
    launch = state.get("launch")
    if not launch:
        return 1, {}, None
    pools = dict(launch.get("pools") or {})
    poll = state.get("poll") or {}
    if poll.get("status") == JobStatus.INTERRUPTED.value and poll.get("attempt") == launch["attempt"]:
        return launch["attempt"] + 1, pools, None
    instance = launch.get("instance")
    bid = state.get("bid") or {}
    if launch.get("status") == LaunchStatus.LAUNCHED.value and bid.get("status") == BidStatus.FAILED.value and instance:
        key = pool_key(instance["instance_type"], instance["subnet_id"])
        capacity.record_failure(pools, key, bid.get("code") or "bid-failed", now, settings.seconds_per_minute)
    return launch["attempt"], pools, launch.get("capacity_wait")


def candidate_pools(ec2: Any, settings: Settings, job: dict) -> list[Pool]:
    """Instance types in the job's (or the stack's) order, each across every subnet (ranked later)."""
    types = (job.get("instance") or {}).get("types") or settings.default_instance_types
    subnets = _subnets(ec2, settings)
    return [
        Pool(t, s["SubnetId"], s["AvailabilityZone"], s.get("AvailabilityZoneId", "")) for t in types for s in subnets
    ]


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
    launch: Callable[[Pool], dict], pools: list[Pool], refusals: dict, now: dt.datetime, seconds_per_minute: int
) -> tuple[dict, Pool] | None:
    """Try the pools that are due in order; a capacity/price answer records the pool's refusal (in place)."""
    for pool in pools:
        if not capacity.is_due(refusals, pool.key, now):
            continue
        try:
            launched = launch(pool)
        except ClientError as exc:
            code = error_code(exc)
            if code in POOL_FAILURE_CODES:
                logger.warning("pool failed", extra={"pool": pool.key, "code": code})
                capacity.record_failure(refusals, pool.key, code, now, seconds_per_minute)
                continue
            raise
        refusals.pop(pool.key, None)
        return launched, pool
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
        params["BlockDeviceMappings"] = [
            {
                "DeviceName": "/dev/sda1",
                "Ebs": {"VolumeSize": volume_gb, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True},
            }
        ]
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


def _instance_record(settings: Settings, instance: dict, chosen: Ranked, list_price: pricing.OnDemandPrice) -> dict:
    pool = chosen.pool
    spot = instance.get("InstanceLifecycle") == "spot" or bool(instance.get("SpotInstanceRequestId"))
    on_demand = list_price.usd_per_hour
    price = on_demand
    if spot:
        price = chosen.spot_price or settings.max_spot_price or on_demand
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
        "on_demand_price_source": list_price.source,
        "placement_score": chosen.score or None,
    }
