"""A job's limits as the workflow applies them: the job's own value within the stack's cap, else the cap.

PollCompletion and RequestSpotInstance apply them; the stack's execution-timeout warning counts the same
bootstrap margin per attempt.
"""

from __future__ import annotations

from spottrain.contract.settings import Settings

# Booting, cloning, setup and data before the runtime clock starts, and the wait for the previous
# attempt's final sync: the callback wait may outlast max runtime + keep-alive by this much.
BOOTSTRAP_MARGIN_MINUTES = 30
# EC2 posts a spot interruption notice two minutes before it reclaims the instance
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html); one more for
# clocks and latency. An instance that still runs this long after its last attempt's notice was not reclaimed:
# its "interrupted, final sync not done" marker was false (a compromised instance can write it), and the
# workflow terminates it rather than leave it running after the job.
FINAL_SYNC_WINDOW_MINUTES = 3


def job_limit(job: dict, name: str, default: int) -> int:
    return int((job.get("limits") or {}).get(name) or default)


def keep_alive_minutes(job: dict, settings: Settings) -> int:
    minutes = job.get("keep_alive_minutes")
    return int(settings.default_keep_alive_minutes if minutes is None else minutes)


def failure_keep_alive_minutes(job: dict, settings: Settings) -> int:
    """How long the debug door keeps a failed instance: the job's on_failure.keep_alive_minutes (default 0),
    never over the stack's maxFailureKeepAliveMinutes (a spec validated against an older stack may ask more)."""
    minutes = (job.get("on_failure") or {}).get("keep_alive_minutes") or 0
    return min(int(minutes), settings.max_failure_keep_alive_minutes)


def capacity_wait_seconds(job: dict, settings: Settings) -> int:
    """How long a launch may wait for spot capacity: the job's capacity_wait_minutes, else the stack's default."""
    minutes = job.get("capacity_wait_minutes")
    return int(settings.capacity_wait_minutes if minutes is None else minutes) * settings.seconds_per_minute


def wait_timeout_seconds(job: dict, settings: Settings) -> int:
    """TimeoutSeconds of an attempt's callback wait: max runtime + the longer keep-alive + the bootstrap margin.

    The agent answers the callback before it keeps the instance (on success or through the debug door), so
    the keep-alive only lengthens the wait for the previous attempt's instance; counted to stay on the safe side.

    Step Functions refuses a HeartbeatSeconds that is not below TimeoutSeconds, which shrunk minutes could cause.
    """
    minutes = (
        job_limit(job, "max_runtime_minutes", settings.max_runtime_minutes)
        + max(keep_alive_minutes(job, settings), failure_keep_alive_minutes(job, settings))
        + BOOTSTRAP_MARGIN_MINUTES
    )
    return max(minutes * settings.seconds_per_minute, settings.heartbeat_lost_seconds + 1)
