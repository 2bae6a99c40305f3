"""The spend cap (`limits.max_cost_usd`) as the workflow hands it to an attempt's agent.

RequestSpotInstance writes `layout.budget_key(attempt)` right after the launch: the cap, what the
earlier attempts spent, the launched pool's hourly price (instance + volume), and `stop_at`, the
moment the cap is reached at that price. The agent stops the training there as it does at max
runtime (SIGTERM, grace, final sync, checkpoints kept) and reports `REASON`. Stdlib only: the agent
imports it.
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping, Optional

REASON = "spend_cap"  # completed.json's reason, PollCompletion's detail.reason, the ASL's Choice value
STOP_AT = "stop_at"


def record(identity: Mapping, cap_usd: float, spent_usd: float, usd_per_hour: float, stop_at: dt.datetime) -> dict:
    """budget.json: {attempt, instance_id, execution, cap_usd, spent_before_usd, usd_per_hour, stop_at (ISO UTC)}."""
    return {
        **identity,
        "cap_usd": cap_usd,
        "spent_before_usd": round(spent_usd, 4),
        "usd_per_hour": usd_per_hour,
        STOP_AT: stop_at.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def stop_time(budget: Optional[Mapping]) -> Optional[dt.datetime]:
    """When the agent must stop (aware UTC), or None without a budget; ValueError for a malformed one."""
    if not budget or not budget.get(STOP_AT):
        return None
    moment = dt.datetime.fromisoformat(str(budget[STOP_AT]).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def stop_message(budget: Mapping, phase: str) -> str:
    """completed.json's message: the cap, the estimate, the fix."""
    return (
        f"limits.max_cost_usd={budget.get('cap_usd')} reached during {phase} (earlier attempts "
        f"USD {budget.get('spent_before_usd')}, this one USD {budget.get('usd_per_hour')}/h until "
        f"{budget.get(STOP_AT)}): the command was stopped and its checkpoints kept; raise the cap to go on"
    )
