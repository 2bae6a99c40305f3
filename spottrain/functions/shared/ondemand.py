"""When a job stops asking for spot: its `on_demand_after` policy, within the stack's allowance.

`on_demand_after: {"interruptions": N, "capacity_wait_minutes": T}` (either or both): from the attempt
that follows the N-th spot interruption, and once the attempt has waited T minutes for spot capacity,
the job launches on-demand instead. validate_job refuses the field when the stack's onDemandFallback
is off. Each function returns the reason the email gives, or None.
"""

from __future__ import annotations

import datetime as dt

from spottrain.functions.shared.capacity import waited_seconds


def after_interruptions(job: dict, attempt: int) -> str | None:
    """Attempt n follows n - 1 interruptions: a relaunch happens only after one."""
    limit = (job.get("on_demand_after") or {}).get("interruptions")
    if limit is None or attempt - 1 < limit:
        return None
    return f"{attempt - 1} spot interruption(s) reached on_demand_after.interruptions={limit}"


def after_waiting(job: dict, wait: dict, now: dt.datetime, seconds_per_minute: int) -> str | None:
    limit = (job.get("on_demand_after") or {}).get("capacity_wait_minutes")
    if limit is None or waited_seconds(wait, now) < limit * seconds_per_minute:
        return None
    return (
        f"waited {waited_seconds(wait, now)}s for spot capacity, reaching on_demand_after.capacity_wait_minutes={limit}"
    )
