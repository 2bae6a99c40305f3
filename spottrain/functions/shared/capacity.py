"""Waiting for spot capacity: each pool's back-off, and the attempt's wait window.

EC2 answers InsufficientInstanceCapacity when a pool (instance type x subnet) has no room right now,
and advises waiting a few minutes or trying elsewhere
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/troubleshooting-launch.html#troubleshooting-launch-capacity).
So a pool that refused is skipped until its back-off expires (1 minute, doubling per refusal, at most
5), never banned for the job; when no pool launches, the workflow's Wait state sleeps until the
earliest pool is due again (at least one minute, so an execution's history grows by at most one wait
per minute of the window), and the attempt gives up once its window (`capacity_wait_minutes`) is over.

Shapes, as they travel in the state's `launch` value:
- pools: {"<type>/<subnet>": {"failures": int, "code": str, "failed_at": iso, "retry_at": iso}}
- wait: {"started_at": iso, "deadline": iso, "waits": int (Wait states entered), "outcome": WAITING|FOUND|GAVE_UP}
Minutes last `Settings.seconds_per_minute` seconds (the emulator's minute is one second).
"""

from __future__ import annotations

import datetime as dt
import math

from spottrain.functions.shared.report import isoformat, parse_time

POOL_BACKOFF_MINUTES = 1
POOL_BACKOFF_MAX_MINUTES = 5
WAITING, FOUND, GAVE_UP = "WAITING", "FOUND", "GAVE_UP"


def pool_backoff_seconds(failures: int, seconds_per_minute: int) -> int:
    """How long a pool that refused `failures` times in a row is skipped: 1, 2, 4, 5, 5... minutes."""
    minutes = min(POOL_BACKOFF_MINUTES * 2 ** (max(failures, 1) - 1), POOL_BACKOFF_MAX_MINUTES)
    return minutes * seconds_per_minute


def record_failure(pools: dict, key: str, code: str, now: dt.datetime, seconds_per_minute: int) -> None:
    """Note (in place) that the pool refused now; it is due again after its back-off."""
    failures = int((pools.get(key) or {}).get("failures") or 0) + 1
    retry_at = now + dt.timedelta(seconds=pool_backoff_seconds(failures, seconds_per_minute))
    pools[key] = {"failures": failures, "code": code, "failed_at": isoformat(now), "retry_at": isoformat(retry_at)}


def is_due(pools: dict, key: str, now: dt.datetime) -> bool:
    record = pools.get(key)
    return record is None or parse_time(record["retry_at"]) <= now


def started_or_kept(wait: dict | None, now: dt.datetime, window_seconds: int) -> dict:
    """The attempt's wait: the one under way (its deadline kept), else one starting now."""
    if wait:
        return {**wait, "outcome": WAITING}
    deadline = now + dt.timedelta(seconds=window_seconds)
    return {"started_at": isoformat(now), "deadline": isoformat(deadline), "waits": 0, "outcome": WAITING}


def seconds_until_retry(pools: dict, wait: dict, now: dt.datetime, seconds_per_minute: int) -> int | None:
    """Whole seconds the Wait state sleeps before the next launch; None once the window is over."""
    deadline = parse_time(wait["deadline"])
    if now >= deadline:
        return None
    next_due = min((parse_time(record["retry_at"]) for record in pools.values()), default=now)
    left = (deadline - now).total_seconds()
    seconds = max((next_due - now).total_seconds(), POOL_BACKOFF_MINUTES * seconds_per_minute)
    return max(1, math.ceil(min(seconds, left)))


def waited_seconds(wait: dict, now: dt.datetime) -> int:
    return max(0, round((now - parse_time(wait["started_at"])).total_seconds()))
